//! Custom headers of a subscription: sent with every delivery, for receivers
//! behind basic auth or an API gateway key.
//!
//! The rules live here, once: a subscription carries at most
//! [`MAX_HEADERS`]; names are HTTP tokens (RFC 9110 `tchar`) of at most
//! [`MAX_NAME_LEN`] characters, compared case-insensitively and stored
//! lower-case; values are visible ASCII, space and tab (no CR, LF or other
//! control characters), at most [`MAX_VALUE_LEN`] bytes. The headers the
//! service sets itself ([`RESERVED_NAMES`], and every name starting with
//! [`RESERVED_PREFIX`]) can't be set.
//!
//! Values are sealed at rest like the signing secret ([`SealedHeaders`]:
//! each value sealed as [`SealPurpose::Headers`] for its subscription, with
//! its name inside the sealed text, so a value moved to another name, item
//! or purpose does not open). Reads show the names with [`MASK`] for every
//! value. Whatever holds values in the clear ([`HeaderValues`],
//! [`HeadersInput`], [`HeadersPatch`]) prints names only in its `Debug`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::signing::sealed::{
    EmptyKeyring, Keyring, OpenError, ResealError, SealPurpose, SealedSecret, SecretOwner,
};
use crate::signing::secret::WebhookSecret;
use crate::validation::ValidationError;

/// Most custom headers a subscription may carry.
pub const MAX_HEADERS: usize = 20;
/// Longest header name, in characters.
pub const MAX_NAME_LEN: usize = 64;
/// Longest header value, in bytes.
pub const MAX_VALUE_LEN: usize = 1024;
/// What reads show in place of every value.
pub const MASK: &str = "********";
/// Names starting with this are the signature's (`webhook-id`, ...).
pub const RESERVED_PREFIX: &str = "webhook-";
/// Names the service sets itself, and the hop-by-hop headers (RFC 9110
/// §7.6.1), which a sender can't pass on.
pub const RESERVED_NAMES: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "connection",
    "transfer-encoding",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Why headers in a request can't be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadersError {
    /// The request is invalid on its own (a 400): a bad or reserved name, a
    /// bad value, or more than [`MAX_HEADERS`] in one request.
    #[error(transparent)]
    Invalid(ValidationError),
    /// The request is well-formed but can't be applied (a 422): two names
    /// that differ only in case, or more than [`MAX_HEADERS`] once merged
    /// with the stored ones.
    #[error(transparent)]
    Unprocessable(ValidationError),
}

impl HeadersError {
    /// The validation error inside.
    pub fn validation(&self) -> &ValidationError {
        match self {
            Self::Invalid(e) | Self::Unprocessable(e) => e,
        }
    }
}

/// A changed subscription's headers could not be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Over the limit once merged.
    #[error(transparent)]
    Headers(#[from] HeadersError),
    /// Nothing to seal with.
    #[error(transparent)]
    Seal(#[from] EmptyKeyring),
}

/// The field an error about header `name` names.
fn field_of(name: &str) -> String {
    format!("headers.{name}")
}

/// Whether `b` is an RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether the (lower-case) `name` is one the service sets itself.
pub fn is_reserved(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX) || RESERVED_NAMES.contains(&name)
}

/// `raw` checked as a header name and lower-cased.
pub fn check_name(raw: &str) -> Result<String, ValidationError> {
    if raw.is_empty() || raw.len() > MAX_NAME_LEN || !raw.bytes().all(is_tchar) {
        let mut shown = raw.to_owned();
        crate::text::truncate(&mut shown, MAX_NAME_LEN + 8);
        return Err(ValidationError::field(
            "invalid_header_name",
            field_of(&shown),
            format!(
                "header name {shown:?} is not an HTTP token of 1 to {MAX_NAME_LEN} characters \
                 (letters, digits and !#$%&'*+-.^_`|~)"
            ),
        ));
    }
    let name = raw.to_ascii_lowercase();
    if name.starts_with(RESERVED_PREFIX) {
        return Err(ValidationError::field(
            "reserved_header",
            field_of(&name),
            format!(
                "header {name} is reserved: names starting with {RESERVED_PREFIX} carry the \
                 signature and are set by the service"
            ),
        ));
    }
    if RESERVED_NAMES.contains(&name.as_str()) {
        return Err(ValidationError::field(
            "reserved_header",
            field_of(&name),
            format!(
                "header {name} is reserved: it is set by the service or is hop-by-hop; \
                 reserved: {RESERVED_PREFIX}*, {}",
                RESERVED_NAMES.join(", ")
            ),
        ));
    }
    Ok(name)
}

/// Checks the value of header `name`. The message never shows the value.
pub fn check_value(name: &str, value: &str) -> Result<(), ValidationError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(ValidationError::field(
            "invalid_header_value",
            field_of(name),
            format!(
                "the value of header {name} is {} bytes; the limit is {MAX_VALUE_LEN}",
                value.len()
            ),
        ));
    }
    if !value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return Err(ValidationError::field(
            "invalid_header_value",
            field_of(name),
            format!(
                "the value of header {name} may hold only visible ASCII characters, spaces \
                 and tabs (no CR, LF or other control characters)"
            ),
        ));
    }
    Ok(())
}

fn too_many(count: usize, merged: bool) -> ValidationError {
    let what = if merged {
        format!("the subscription would have {count} custom headers after this change")
    } else {
        format!("the request sets {count} custom headers")
    };
    ValidationError::field(
        "too_many_headers",
        "headers",
        format!("{what}; a subscription may have at most {MAX_HEADERS}"),
    )
}

/// Lower-cases the names of `input`, refusing two that differ only in
/// case, and checks each entry with `check`.
fn normalise<T>(
    input: BTreeMap<String, T>,
    mut check: impl FnMut(&str, &T) -> Result<(), ValidationError>,
) -> Result<BTreeMap<String, T>, HeadersError> {
    if input.len() > MAX_HEADERS {
        return Err(HeadersError::Invalid(too_many(input.len(), false)));
    }
    let mut out: BTreeMap<String, T> = BTreeMap::new();
    let mut sent: BTreeMap<String, String> = BTreeMap::new();
    for (raw, value) in input {
        let name = check_name(&raw).map_err(HeadersError::Invalid)?;
        check(&name, &value).map_err(HeadersError::Invalid)?;
        if let Some(first) = sent.get(&name) {
            return Err(HeadersError::Unprocessable(ValidationError::field(
                "duplicate_header",
                field_of(&name),
                format!(
                    "header names are case-insensitive: {first:?} and {raw:?} are the same \
                     header {name}"
                ),
            )));
        }
        sent.insert(name.clone(), raw);
        out.insert(name, value);
    }
    Ok(out)
}

/// The `headers` of a create request, as sent: name to value.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct HeadersInput(pub BTreeMap<String, String>);

impl fmt::Debug for HeadersInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        redacted(f, self.0.keys())
    }
}

impl HeadersInput {
    /// The headers checked, names lower-cased.
    pub fn validate(self) -> Result<HeaderValues, HeadersError> {
        normalise(self.0, |name, value| check_value(name, value)).map(HeaderValues)
    }
}

/// The `headers` of a PATCH request, as sent: a name with a string sets
/// it, a name with `null` removes it (JSON Merge Patch).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct HeadersPatchInput(pub BTreeMap<String, Option<String>>);

impl fmt::Debug for HeadersPatchInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        redacted(f, self.0.keys())
    }
}

impl HeadersPatchInput {
    /// The change checked, names lower-cased. Removing a reserved or
    /// malformed name is refused like setting it.
    pub fn validate(self) -> Result<HeadersPatch, HeadersError> {
        normalise(self.0, |name, value| match value {
            Some(value) => check_value(name, value),
            None => Ok(()),
        })
        .map(HeadersPatch)
    }
}

/// A checked change of a subscription's headers: lower-case name to the
/// new value, or `None` to remove it. Names not in it are kept.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeadersPatch(BTreeMap<String, Option<String>>);

impl fmt::Debug for HeadersPatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        redacted(f, self.0.keys())
    }
}

impl HeadersPatch {
    /// Applies the change to `sealed` (the headers of `owner`): new values
    /// sealed with the keyring's newest version, removed names dropped, the
    /// others left as they are. Refused when more than [`MAX_HEADERS`]
    /// would remain. Returns whether anything changed (every set value
    /// counts: it is sealed anew).
    pub fn apply(
        &self,
        sealed: &mut SealedHeaders,
        keyring: &Keyring,
        owner: SecretOwner<'_>,
    ) -> Result<bool, ApplyError> {
        let mut next = sealed.clone();
        let mut changed = false;
        for (name, value) in &self.0 {
            match value {
                Some(value) => {
                    next.0
                        .insert(name.clone(), seal_one(keyring, owner, name, value)?);
                    changed = true;
                }
                None => changed |= next.0.remove(name).is_some(),
            }
        }
        if next.0.len() > MAX_HEADERS {
            return Err(HeadersError::Unprocessable(too_many(next.0.len(), true)).into());
        }
        *sealed = next;
        Ok(changed)
    }
}

/// Headers in the clear, lower-case name to value: checked input, or the
/// sealed ones opened for a delivery. Its `Debug` shows the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeaderValues(BTreeMap<String, String>);

impl fmt::Debug for HeaderValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        redacted(f, self.0.keys())
    }
}

impl HeaderValues {
    /// Name and value of each, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `{name: "[redacted]", ...}`.
fn redacted<'a>(
    f: &mut fmt::Formatter<'_>,
    names: impl Iterator<Item = &'a String>,
) -> fmt::Result {
    f.debug_map()
        .entries(names.map(|n| (n, format_args!("[redacted]"))))
        .finish()
}

/// The text a value is sealed as: its name, a colon, the value. Names are
/// tokens, which hold no colon.
fn seal_one(
    keyring: &Keyring,
    owner: SecretOwner<'_>,
    name: &str,
    value: &str,
) -> Result<SealedSecret, EmptyKeyring> {
    let text = WebhookSecret::from_string(format!("{name}:{value}"));
    keyring.seal_text(SealPurpose::Headers, &text, owner)
}

/// A subscription's headers as the item stores them: the attribute
/// `headers`, a map of lower-case name to its value sealed (see
/// [`SealedSecret`]). Names are in the clear; values never are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedHeaders(BTreeMap<String, SealedSecret>);

impl SealedHeaders {
    /// `values` sealed for `owner` with the keyring's newest version.
    pub fn seal(
        values: &HeaderValues,
        keyring: &Keyring,
        owner: SecretOwner<'_>,
    ) -> Result<Self, EmptyKeyring> {
        values
            .iter()
            .map(|(name, value)| Ok((name.to_owned(), seal_one(keyring, owner, name, value)?)))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The names with [`MASK`] for every value: what reads show.
    pub fn masked(&self) -> BTreeMap<&str, &'static str> {
        self.names().map(|n| (n, MASK)).collect()
    }

    /// The key versions the values are sealed with.
    pub fn key_versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.values().map(|s| s.key_version)
    }

    /// The values, opened: each must have been sealed for `owner` under its
    /// name.
    pub fn open(
        &self,
        keyring: &Keyring,
        owner: SecretOwner<'_>,
    ) -> Result<HeaderValues, OpenError> {
        let mut values = BTreeMap::new();
        for (name, sealed) in &self.0 {
            let text = keyring.open_text(SealPurpose::Headers, sealed, owner)?;
            match text.expose().split_once(':') {
                Some((sealed_name, value)) if sealed_name == name => {
                    values.insert(name.clone(), value.to_owned());
                }
                // Sealed for this subscription, but under another name.
                _ => return Err(OpenError::Rejected(sealed.key_version)),
            }
        }
        Ok(HeaderValues(values))
    }

    /// Re-seals the values not sealed with the keyring's newest version.
    /// Returns whether any changed.
    pub fn reseal(
        &mut self,
        keyring: &Keyring,
        owner: SecretOwner<'_>,
    ) -> Result<bool, ResealError> {
        let newest = keyring.newest().ok_or(ResealError::Empty(EmptyKeyring))?;
        let mut changed = false;
        for sealed in self.0.values_mut() {
            if sealed.key_version == newest {
                continue;
            }
            let text = keyring.open_text(SealPurpose::Headers, sealed, owner)?;
            *sealed = keyring.seal_text(SealPurpose::Headers, &text, owner)?;
            changed = true;
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: SecretOwner<'static> = SecretOwner {
        company_id: "acme",
        subscription_id: "sub_0190a1b2c3d4e5f60718293a4b5c6d7e",
    };

    fn input(pairs: &[(&str, &str)]) -> HeadersInput {
        HeadersInput(
            pairs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    fn code_and_field(e: &HeadersError) -> (&'static str, Option<&str>) {
        let v = e.validation();
        (v.code, v.field.as_deref())
    }

    #[test]
    fn names_are_tokens_lower_cased_and_values_visible_ascii() {
        let values = input(&[
            ("X-Api-Key", "k 1\tv"),
            ("Authorization", "Basic dXNlcjpwYXNz"),
            ("x!#$%&'*+-.^_`|~9", ""),
        ])
        .validate()
        .unwrap();
        let names: Vec<&str> = values.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["authorization", "x!#$%&'*+-.^_`|~9", "x-api-key"]);
        assert!(
            input(&[(&"a".repeat(MAX_NAME_LEN), &"v".repeat(MAX_VALUE_LEN))])
                .validate()
                .is_ok()
        );
        for bad in [
            "",
            "x y",
            "x:y",
            "x\"",
            "é",
            "a(b)",
            &"a".repeat(MAX_NAME_LEN + 1),
        ] {
            let e = input(&[(bad, "v")]).validate().unwrap_err();
            assert_eq!(code_and_field(&e).0, "invalid_header_name", "{bad:?}");
            assert!(matches!(e, HeadersError::Invalid(_)));
        }
        for bad in [
            "a\r\nb",
            "a\nb",
            "\u{7f}",
            "é",
            "\0",
            &"v".repeat(MAX_VALUE_LEN + 1),
        ] {
            let e = input(&[("X-Key", bad)]).validate().unwrap_err();
            assert_eq!(
                code_and_field(&e),
                ("invalid_header_value", Some("headers.x-key")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn error_messages_never_show_the_value() {
        let e = input(&[("x-key", "s3cr3t\nvalue")]).validate().unwrap_err();
        assert!(!e.validation().message.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn every_reserved_name_is_refused_in_any_case() {
        let mut names: Vec<String> = RESERVED_NAMES.iter().map(|n| (*n).to_owned()).collect();
        names.extend(["webhook-id", "webhook-signature", "webhook-anything"].map(String::from));
        for name in names {
            for sent in [name.clone(), name.to_uppercase(), capitalised(&name)] {
                let e = input(&[(&sent, "v")]).validate().unwrap_err();
                let field = format!("headers.{name}");
                assert_eq!(
                    code_and_field(&e),
                    ("reserved_header", Some(field.as_str())),
                    "{sent}"
                );
                let patch = HeadersPatchInput([(sent.clone(), None)].into()).validate();
                assert!(patch.is_err(), "{sent}");
            }
        }
        assert!(
            input(&[
                ("authorization", "Basic x"),
                ("webhook", "v"),
                ("x-webhook-id", "v")
            ])
            .validate()
            .is_ok()
        );
    }

    fn capitalised(name: &str) -> String {
        name.split('-')
            .map(|part| {
                let mut chars = part.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("-")
    }

    #[test]
    fn more_than_the_limit_and_case_duplicates_are_refused() {
        let many: Vec<(String, String)> = (0..=MAX_HEADERS)
            .map(|i| (format!("x-h{i}"), "v".to_owned()))
            .collect();
        let e = HeadersInput(many.into_iter().collect())
            .validate()
            .unwrap_err();
        assert_eq!(code_and_field(&e), ("too_many_headers", Some("headers")));
        let e = input(&[("X-Key", "a"), ("x-key", "b")])
            .validate()
            .unwrap_err();
        assert!(matches!(e, HeadersError::Unprocessable(_)));
        assert_eq!(
            code_and_field(&e),
            ("duplicate_header", Some("headers.x-key"))
        );
    }

    #[test]
    fn sealed_values_open_for_their_owner_and_name_only() {
        let ring = Keyring::generate();
        let values = input(&[("x-api-key", "k-123"), ("authorization", "Basic abc")])
            .validate()
            .unwrap();
        let sealed = SealedHeaders::seal(&values, &ring, OWNER).unwrap();
        assert_eq!(sealed.open(&ring, OWNER).unwrap(), values);
        let json = serde_json::to_string(&sealed).unwrap();
        assert!(
            !json.contains("k-123") && !json.contains("Basic abc"),
            "{json}"
        );
        assert_eq!(
            sealed.masked(),
            BTreeMap::from([("authorization", MASK), ("x-api-key", MASK)])
        );
        let other = SecretOwner {
            company_id: "globex",
            ..OWNER
        };
        assert_eq!(sealed.open(&ring, other), Err(OpenError::Rejected(1)));
        // A value moved under another name does not open.
        let mut swapped = sealed.clone();
        let key = swapped.0["x-api-key"].clone();
        swapped.0.insert("authorization".into(), key);
        assert_eq!(swapped.open(&ring, OWNER), Err(OpenError::Rejected(1)));
        // Nor as the signing secret.
        assert!(ring.open(&sealed.0["x-api-key"], OWNER).is_err());
    }

    #[test]
    fn debug_shows_names_only() {
        let values = input(&[("x-api-key", "k-123")]).validate().unwrap();
        let patch = HeadersPatchInput([("X-Api-Key".into(), Some("k-456".into()))].into());
        let ring = Keyring::generate();
        let sealed = SealedHeaders::seal(&values, &ring, OWNER).unwrap();
        for text in [
            format!("{values:?}"),
            format!("{:?}", input(&[("x-api-key", "k-123")])),
            format!("{patch:?}"),
            format!("{:?}", patch.clone().validate().unwrap()),
            format!("{sealed:?}"),
        ] {
            assert!(
                text.contains("x-api-key") || text.contains("X-Api-Key"),
                "{text}"
            );
            assert!(!text.contains("k-123") && !text.contains("k-456"), "{text}");
        }
    }

    #[test]
    fn patches_merge_and_stop_at_the_limit() {
        let ring = Keyring::generate();
        let values = input(&[("a", "1"), ("b", "2"), ("c", "3")])
            .validate()
            .unwrap();
        let mut sealed = SealedHeaders::seal(&values, &ring, OWNER).unwrap();
        let patch = HeadersPatchInput(
            [
                ("A".to_owned(), Some("10".to_owned())),
                ("b".to_owned(), None),
                ("d".to_owned(), Some("4".to_owned())),
                ("zz".to_owned(), None),
            ]
            .into(),
        )
        .validate()
        .unwrap();
        assert!(patch.apply(&mut sealed, &ring, OWNER).unwrap());
        let opened: Vec<(String, String)> = sealed
            .open(&ring, OWNER)
            .unwrap()
            .iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(
            opened,
            [("a", "10"), ("c", "3"), ("d", "4")].map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        let nothing = HeadersPatchInput([("zz".to_owned(), None)].into())
            .validate()
            .unwrap();
        assert!(!nothing.apply(&mut sealed, &ring, OWNER).unwrap());

        let more = HeadersPatchInput(
            (0..MAX_HEADERS - 2)
                .map(|i| (format!("x-{i}"), Some("v".to_owned())))
                .collect(),
        )
        .validate()
        .unwrap();
        let before = sealed.clone();
        let e = more.apply(&mut sealed, &ring, OWNER).unwrap_err();
        let ApplyError::Headers(HeadersError::Unprocessable(e)) = e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("too_many_headers", Some("headers"))
        );
        assert!(e.message.contains("21"), "{}", e.message);
        assert_eq!(sealed, before, "nothing applied");
    }

    #[test]
    fn reseal_moves_old_versions_to_the_newest() {
        let old = Keyring::new([(1, [7u8; 32].as_slice())]).unwrap();
        let values = input(&[("x-key", "v")]).validate().unwrap();
        let mut sealed = SealedHeaders::seal(&values, &old, OWNER).unwrap();
        let new = Keyring::new([(1, [7u8; 32].as_slice()), (2, [9u8; 32].as_slice())]).unwrap();
        assert!(sealed.reseal(&new, OWNER).unwrap());
        assert_eq!(sealed.key_versions().collect::<Vec<_>>(), [2]);
        assert!(!sealed.reseal(&new, OWNER).unwrap());
        assert_eq!(sealed.open(&new, OWNER).unwrap(), values);
    }
}
