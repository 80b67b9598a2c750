//! The parts of `template.yaml` the local stack needs.

use std::path::Path;

use serde_yaml::Value;

/// `template.yaml` could not be read or lacks something the local stack needs.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Path of the template.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("cannot parse {path}: {source}")]
    Parse {
        /// Path of the template.
        path: String,
        /// The YAML error.
        source: serde_yaml::Error,
    },
    /// A resource lacks a property or has an unexpected shape.
    #[error("resource {resource}: {problem}")]
    Shape {
        /// Logical id.
        resource: String,
        /// What is wrong.
        problem: String,
    },
}

/// A key attribute of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAttribute {
    /// Attribute name.
    pub name: String,
    /// `S`, `N` or `B`.
    pub attribute_type: String,
}

/// A DynamoDB table as the template declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// Logical id in the template, e.g. `SubscriptionsTable`.
    pub logical_id: String,
    /// Partition key.
    pub hash_key: KeyAttribute,
    /// Sort key, if any.
    pub range_key: Option<KeyAttribute>,
    /// Stream view type, if the table has a stream.
    pub stream_view_type: Option<String>,
    /// TTL attribute, if enabled.
    pub ttl_attribute: Option<String>,
}

/// A parsed `template.yaml`.
#[derive(Debug, Clone)]
pub struct Template {
    root: Value,
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

impl Template {
    /// Reads and parses the template at `path`.
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|source| TemplateError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    /// Parses template text. CloudFormation tags (`!Ref`, `!Sub`, ...) are
    /// kept as tagged values.
    pub fn parse(text: &str) -> Result<Self, serde_yaml::Error> {
        Ok(Self {
            root: serde_yaml::from_str(text)?,
        })
    }

    /// Logical ids and bodies of the resources of `resource_type`.
    pub fn resources_of_type<'a>(
        &'a self,
        resource_type: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        self.root
            .get("Resources")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .filter_map(move |(id, body)| {
                (str_at(body, "Type") == Some(resource_type)).then_some((id.as_str()?, body))
            })
    }

    /// The body of resource `logical_id`.
    pub fn resource(&self, logical_id: &str) -> Result<&Value, TemplateError> {
        self.root
            .get("Resources")
            .and_then(|r| r.get(logical_id))
            .ok_or_else(|| TemplateError::Shape {
                resource: logical_id.to_owned(),
                problem: "no such resource in the template".to_owned(),
            })
    }

    /// `value` with a `!Ref` to a parameter replaced by the parameter's
    /// default; other values as they are.
    pub fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        if let Value::Tagged(tagged) = value
            && tagged.tag == "Ref"
            && let Some(name) = tagged.value.as_str()
            && let Some(default) = self
                .root
                .get("Parameters")
                .and_then(|p| p.get(name))
                .and_then(|p| p.get("Default"))
        {
            return default;
        }
        value
    }

    /// Every `AWS::DynamoDB::Table` of the template.
    pub fn tables(&self) -> Result<Vec<TableSpec>, TemplateError> {
        self.resources_of_type("AWS::DynamoDB::Table")
            .map(|(id, body)| table_spec(id, body))
            .collect()
    }

    /// The table with logical id `logical_id`.
    pub fn table(&self, logical_id: &str) -> Result<TableSpec, TemplateError> {
        let (id, body) = self
            .resources_of_type("AWS::DynamoDB::Table")
            .find(|(id, _)| *id == logical_id)
            .ok_or_else(|| TemplateError::Shape {
                resource: logical_id.to_owned(),
                problem: "no such AWS::DynamoDB::Table in the template".to_owned(),
            })?;
        table_spec(id, body)
    }
}

fn table_spec(id: &str, body: &Value) -> Result<TableSpec, TemplateError> {
    let shape = |problem: &str| TemplateError::Shape {
        resource: id.to_owned(),
        problem: problem.to_owned(),
    };
    let props = body
        .get("Properties")
        .ok_or_else(|| shape("no Properties"))?;
    let attrs = props
        .get("AttributeDefinitions")
        .and_then(Value::as_sequence)
        .ok_or_else(|| shape("no AttributeDefinitions"))?;
    let attr = |name: &str| -> Result<KeyAttribute, TemplateError> {
        let t = attrs
            .iter()
            .find(|a| str_at(a, "AttributeName") == Some(name))
            .and_then(|a| str_at(a, "AttributeType"))
            .ok_or_else(|| shape(&format!("key attribute {name} has no definition")))?;
        Ok(KeyAttribute {
            name: name.to_owned(),
            attribute_type: t.to_owned(),
        })
    };
    let keys = props
        .get("KeySchema")
        .and_then(Value::as_sequence)
        .ok_or_else(|| shape("no KeySchema"))?;
    let key = |kind: &str| {
        keys.iter()
            .find(|k| str_at(k, "KeyType") == Some(kind))
            .and_then(|k| str_at(k, "AttributeName"))
    };
    let hash_key = attr(key("HASH").ok_or_else(|| shape("no HASH key"))?)?;
    let range_key = key("RANGE").map(attr).transpose()?;
    let stream_view_type = props
        .get("StreamSpecification")
        .and_then(|s| str_at(s, "StreamViewType"))
        .map(str::to_owned);
    let ttl_attribute = props
        .get("TimeToLiveSpecification")
        .filter(|t| t.get("Enabled").and_then(Value::as_bool) == Some(true))
        .and_then(|t| str_at(t, "AttributeName"))
        .map(str::to_owned);
    Ok(TableSpec {
        logical_id: id.to_owned(),
        hash_key,
        range_key,
        stream_view_type,
        ttl_attribute,
    })
}

/// Path of the repository's `template.yaml`, found from this crate's
/// location at build time or from the `TEMPLATE_PATH` variable.
pub fn default_path() -> std::path::PathBuf {
    std::env::var_os("TEMPLATE_PATH").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml"),
        std::path::PathBuf::from,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_subscriptions_table_of_the_repository_template() {
        let t = Template::load(&default_path()).unwrap();
        let table = t.table("SubscriptionsTable").unwrap();
        assert_eq!(table.hash_key.name, "company_id");
        assert_eq!(table.hash_key.attribute_type, "S");
        assert_eq!(table.range_key.unwrap().name, "subscription_id");
        assert_eq!(table.ttl_attribute.as_deref(), Some("expires_at"));
    }

    #[test]
    fn tagged_values_and_missing_keys() {
        let t = Template::parse(
            "Resources:\n  T:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      TableName: !Sub '${AWS::StackName}-t'\n      AttributeDefinitions: [{AttributeName: pk, AttributeType: N}]\n      KeySchema: [{AttributeName: pk, KeyType: HASH}]\n      StreamSpecification: {StreamViewType: NEW_AND_OLD_IMAGES}\n  Bad:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      AttributeDefinitions: []\n      KeySchema: [{AttributeName: pk, KeyType: HASH}]\n",
        )
        .unwrap();
        let ok = t.table("T").unwrap();
        assert_eq!(ok.hash_key.attribute_type, "N");
        assert!(ok.range_key.is_none());
        assert_eq!(ok.stream_view_type.as_deref(), Some("NEW_AND_OLD_IMAGES"));
        let err = t.table("Bad").unwrap_err().to_string();
        assert!(err.contains("Bad") && err.contains("pk"), "{err}");
    }
}
