//! Each function's own AWS identity in the local stack.
//!
//! In AWS every function calls AWS with its role's credentials. Locally
//! the handlers run in one process against an emulator that checks no
//! permission, so each gets its own SDK configuration whose access key id
//! is the function's logical id in the template ([`function_sdk`]). That
//! changes nothing for the emulator, but every request a function makes
//! names it in its SigV4 `Authorization` header ([`function_of`]), so a
//! test can hold each function's calls to its policy in the template.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};

/// The secret key of the local identities (the emulator checks none).
const LOCAL_SECRET: &str = "local";

/// `sdk` with credentials whose access key id is `function` (a logical id
/// of the template), so each request it signs names the function.
pub fn function_sdk(sdk: &SdkConfig, function: &str) -> SdkConfig {
    sdk.to_builder()
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            function,
            LOCAL_SECRET,
            None,
            None,
            "local-stack",
        )))
        .build()
}

/// The access key id a SigV4 `Authorization` header was signed with
/// (`AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request,
/// ...`): for a function's request, its logical id.
pub fn function_of(authorization: &str) -> Option<&str> {
    let credential = authorization
        .split([',', ' '])
        .find_map(|part| part.trim().strip_prefix("Credential="))?;
    credential.split('/').next().filter(|key| !key.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_key_id_of_a_sigv4_header() {
        let header = "AWS4-HMAC-SHA256 Credential=WebhookDeliveryFunction/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(function_of(header), Some("WebhookDeliveryFunction"));
        assert_eq!(function_of("Bearer token"), None);
        assert_eq!(function_of("AWS4-HMAC-SHA256 Credential=/x"), None);
    }

    #[test]
    fn a_function_sdk_keeps_everything_but_the_credentials() {
        let sdk = SdkConfig::builder()
            .endpoint_url("http://127.0.0.1:1")
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let function = function_sdk(&sdk, "EndpointProberFunction");
        assert_eq!(function.endpoint_url(), Some("http://127.0.0.1:1"));
        assert_eq!(function.region(), sdk.region());
        assert!(function.credentials_provider().is_some());
    }
}
