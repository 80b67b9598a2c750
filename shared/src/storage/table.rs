//! One DynamoDB table as every store holds it: the client and the table's
//! name, its requests, and the mapping of its items and errors.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::delete_item::builders::DeleteItemFluentBuilder;
use aws_sdk_dynamodb::operation::get_item::builders::GetItemFluentBuilder;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::scan::builders::ScanFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_attribute_value, to_item};

use crate::storage::error::StoreError;

/// An item as DynamoDB returns and takes it.
pub type Item = HashMap<String, AttributeValue>;

/// A string attribute.
pub fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

/// A number attribute.
pub fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The string attribute `name` of `item`, or `?` (to name an item in an
/// error).
pub fn key_of(item: &Item, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(k)) => k.clone(),
        _ => String::from("?"),
    }
}

/// One table through one client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Table {
    client: Client,
    name: String,
}

impl Table {
    /// The table `name` through `client`.
    pub fn new(client: Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
        }
    }

    /// The table name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client, for calls that name tables themselves
    /// (`BatchWriteItem`, `TransactWriteItems`).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A `GetItem` of this table.
    pub fn get_item(&self) -> GetItemFluentBuilder {
        self.client.get_item().table_name(&self.name)
    }

    /// A `PutItem` to this table.
    pub fn put_item(&self) -> PutItemFluentBuilder {
        self.client.put_item().table_name(&self.name)
    }

    /// An `UpdateItem` of this table.
    pub fn update_item(&self) -> UpdateItemFluentBuilder {
        self.client.update_item().table_name(&self.name)
    }

    /// A `DeleteItem` of this table.
    pub fn delete_item(&self) -> DeleteItemFluentBuilder {
        self.client.delete_item().table_name(&self.name)
    }

    /// A `Query` of this table.
    pub fn query(&self) -> QueryFluentBuilder {
        self.client.query().table_name(&self.name)
    }

    /// A `Scan` of this table.
    pub fn scan(&self) -> ScanFluentBuilder {
        self.client.scan().table_name(&self.name)
    }

    /// `err` of the call `operation` on this table.
    pub fn dynamo_err<E: std::error::Error>(&self, operation: &'static str, err: E) -> StoreError {
        StoreError::Dynamo {
            operation,
            table: self.name.clone(),
            message: DisplayErrorContext(err).to_string(),
        }
    }

    /// Sends the conditional `update`: its output, or `None` when the
    /// condition did not hold.
    pub async fn update_if(
        &self,
        update: UpdateItemFluentBuilder,
    ) -> Result<Option<UpdateItemOutput>, StoreError> {
        match update.send().await {
            Ok(out) => Ok(Some(out)),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(UpdateItemError::is_conditional_check_failed_exception) =>
            {
                Ok(None)
            }
            Err(err) => Err(self.dynamo_err("UpdateItem", err)),
        }
    }

    /// The item `key` of this table did not map.
    pub fn mapping_err(&self, key: &str, source: serde_dynamo::Error) -> StoreError {
        StoreError::Mapping {
            key: key.to_owned(),
            table: self.name.clone(),
            source,
        }
    }

    /// `value`, the item `key`, as an item.
    pub fn encode<T: Serialize>(&self, key: &str, value: &T) -> Result<Item, StoreError> {
        to_item(value).map_err(|source| self.mapping_err(key, source))
    }

    /// Writes `value` as the item `key`, unconditionally (a `PutItem`
    /// that overwrites the item stored under the same key).
    pub async fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let item = self.encode(key, value)?;
        self.put_item()
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.dynamo_err("PutItem", e))?;
        Ok(())
    }

    /// `value`, part of the item `key`, as one attribute.
    pub fn attribute<T: Serialize>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<AttributeValue, StoreError> {
        to_attribute_value(value).map_err(|source| self.mapping_err(key, source))
    }

    /// The item `key` as a `T`.
    pub fn decode<T: DeserializeOwned>(&self, key: &str, item: Item) -> Result<T, StoreError> {
        from_item(item).map_err(|source| self.mapping_err(key, source))
    }
}
