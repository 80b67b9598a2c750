//! The console: a static single-page app under `/console`, embedded in the
//! binary at build time (the files in `console/`), served with a strict
//! Content-Security-Policy. These are the only routes without the
//! authorizer; they serve static files and the sign-in settings, never
//! data. The page signs in itself (OIDC authorization code with PKCE) and
//! calls the API with the token; it takes no token or code from its
//! address (only the local stack's gateway adds a one-time development
//! sign-in to the settings, see `local-stack`'s `dev_sign_in`).

use http::StatusCode;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use lambda_http::{Body, Response};
use serde::Serialize;
use shared::config::{ConfigError, Vars};

use crate::error::ApiError;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// The page itself, served at `/console`.
const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_str!("../console/index.html"),
};

/// The files under `/console/{file}`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../console/console.js"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../console/console.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../console/favicon.svg"),
    },
];

/// The name of the sign-in settings file, `/console/config.json`.
pub const CONFIG_FILE: &str = "config.json";

/// The names served under `/console/{file}`.
pub fn files() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.name).chain([CONFIG_FILE])
}

/// The console's OpenID Connect client.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OidcClient {
    /// The provider (the API's `JwtIssuer`); its discovery document names
    /// the authorization and token endpoints.
    pub issuer: String,
    /// The public client's id.
    pub client_id: String,
    /// Scopes asked for.
    pub scope: String,
}

/// Sign-in settings and the security headers of the console.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// `None`: the console has no sign-in.
    pub oidc: Option<OidcClient>,
    /// How long failed and parked events are kept: the recover form's
    /// default window.
    pub parked_retention_days: u32,
    /// The `Content-Security-Policy` of every console response.
    pub content_security_policy: String,
    config_json: String,
}

/// The origin (`https://host[:port]`) of `value`, read from `var`.
fn origin(var: &'static str, value: &str) -> Result<String, ConfigError> {
    let url =
        url::Url::parse(value).map_err(|e| ConfigError::new(var, format!("not a URL: {e}")))?;
    if url.scheme() != "https" || url.host_str().is_none() {
        return Err(ConfigError::new(var, "must be an https URL"));
    }
    Ok(url.origin().ascii_serialization())
}

impl ConsoleConfig {
    /// Reads `CONSOLE_OIDC_ISSUER`, `CONSOLE_OIDC_CLIENT_ID` (empty: no
    /// OIDC sign-in), `CONSOLE_OIDC_SCOPE` (default `openid`) and
    /// `CONSOLE_OIDC_TOKEN_ORIGIN` (the token endpoint's origin when it is
    /// not the issuer's); `parked_retention_days` is the API's
    /// `PARKED_RETENTION_DAYS`.
    pub fn from_vars(vars: &Vars, parked_retention_days: u32) -> Result<Self, ConfigError> {
        let client_id = vars.optional("CONSOLE_OIDC_CLIENT_ID");
        let oidc = match client_id {
            None => None,
            Some(client_id) => {
                let issuer = vars.required("CONSOLE_OIDC_ISSUER")?;
                origin("CONSOLE_OIDC_ISSUER", &issuer)?;
                Some(OidcClient {
                    issuer: issuer.trim_end_matches('/').to_owned(),
                    client_id,
                    scope: vars
                        .optional("CONSOLE_OIDC_SCOPE")
                        .unwrap_or_else(|| "openid".to_owned()),
                })
            }
        };
        let mut connect = vec!["'self'".to_owned()];
        if let Some(oidc) = &oidc {
            connect.push(origin("CONSOLE_OIDC_ISSUER", &oidc.issuer)?);
            if let Some(token) = vars.optional("CONSOLE_OIDC_TOKEN_ORIGIN") {
                connect.push(origin("CONSOLE_OIDC_TOKEN_ORIGIN", &token)?);
            }
        }
        connect.dedup();
        Ok(Self::new(oidc, parked_retention_days, &connect.join(" ")))
    }

    fn new(oidc: Option<OidcClient>, parked_retention_days: u32, connect_src: &str) -> Self {
        // No inline script or style, nothing from another origin but the
        // sign-in provider's endpoints, no plugins, no framing, and
        // Trusted Types: the page cannot turn a string into HTML at all.
        let content_security_policy = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src {connect_src}; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"
        );
        let config_json = serde_json::to_string(&serde_json::json!({
            "oidc": oidc,
            "parked_retention_days": parked_retention_days,
        }))
        .expect("the settings serialise");
        Self {
            oidc,
            parked_retention_days,
            content_security_policy,
            config_json,
        }
    }

    /// The response for `/console` (`file` = `None`) or `/console/{file}`.
    pub fn serve(&self, file: Option<&str>) -> Response<Body> {
        let (content_type, body) = match file {
            None => (INDEX.content_type, INDEX.body),
            Some(CONFIG_FILE) => ("application/json", self.config_json.as_str()),
            Some(name) => match ASSETS.iter().find(|a| a.name == name) {
                Some(asset) => (asset.content_type, asset.body),
                None => {
                    let mut response = ApiError::new(
                        StatusCode::NOT_FOUND,
                        "route_not_found",
                        "the console has no such file",
                    )
                    .into_response();
                    self.secure(&mut response);
                    return response;
                }
            },
        };
        let mut response = Response::builder()
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, content_type)
            // Revalidated on every load: a deploy reaches open consoles.
            .header(CACHE_CONTROL, "no-cache")
            .body(Body::Text(body.to_owned()))
            .expect("static response parts are valid");
        self.secure(&mut response);
        response
    }

    /// Adds the security headers to a console response.
    fn secure(&self, response: &mut Response<Body>) {
        let headers = response.headers_mut();
        let csp = http::HeaderValue::from_str(&self.content_security_policy)
            .expect("the policy is ASCII");
        headers.insert(http::header::CONTENT_SECURITY_POLICY, csp);
        for (name, value) in [
            (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (http::header::X_FRAME_OPTIONS, "DENY"),
            (http::header::REFERRER_POLICY, "no-referrer"),
            (
                http::header::HeaderName::from_static("cross-origin-opener-policy"),
                "same-origin",
            ),
        ] {
            headers.insert(name, http::HeaderValue::from_static(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        Vars::from_map(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn without_a_client_id_the_console_has_no_sign_in() {
        let c =
            ConsoleConfig::from_vars(&vars(&[("CONSOLE_OIDC_ISSUER", "https://id.example/")]), 30)
                .unwrap();
        assert_eq!(c.oidc, None);
        assert!(c.content_security_policy.contains("connect-src 'self';"));
        let r = c.serve(Some(CONFIG_FILE));
        assert_eq!(
            r.body(),
            &Body::Text(r#"{"oidc":null,"parked_retention_days":30}"#.to_owned())
        );
    }

    #[test]
    fn the_settings_carry_the_retention_for_the_recover_window() {
        let c = ConsoleConfig::from_vars(&vars(&[]), 7).unwrap();
        let Body::Text(settings) = c.serve(Some(CONFIG_FILE)).into_body() else {
            panic!("the settings are text");
        };
        let settings: serde_json::Value = serde_json::from_str(&settings).unwrap();
        assert_eq!(settings["parked_retention_days"], 7);
    }

    #[test]
    fn the_policy_allows_the_issuer_and_token_origins_only() {
        let c = ConsoleConfig::from_vars(
            &vars(&[
                (
                    "CONSOLE_OIDC_ISSUER",
                    "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc",
                ),
                ("CONSOLE_OIDC_CLIENT_ID", "console"),
                (
                    "CONSOLE_OIDC_TOKEN_ORIGIN",
                    "https://acme.auth.eu-west-1.amazoncognito.com",
                ),
            ]),
            30,
        )
        .unwrap();
        assert!(c.content_security_policy.contains(
            "connect-src 'self' https://cognito-idp.eu-west-1.amazonaws.com https://acme.auth.eu-west-1.amazoncognito.com;"
        ));
        assert_eq!(c.oidc.unwrap().scope, "openid");
        let bad = ConsoleConfig::from_vars(
            &vars(&[
                ("CONSOLE_OIDC_ISSUER", "http://plain.example"),
                ("CONSOLE_OIDC_CLIENT_ID", "console"),
            ]),
            30,
        );
        assert!(bad.is_err());
    }

    #[test]
    fn files_are_served_with_their_type_and_the_security_headers() {
        let c = ConsoleConfig::from_vars(&vars(&[]), 30).unwrap();
        for (file, ty) in [
            (None, "text/html; charset=utf-8"),
            (Some("console.js"), "text/javascript; charset=utf-8"),
            (Some("console.css"), "text/css; charset=utf-8"),
        ] {
            let r = c.serve(file);
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.headers()[CONTENT_TYPE], ty);
            assert!(
                r.headers()[http::header::CONTENT_SECURITY_POLICY]
                    .to_str()
                    .unwrap()
                    .starts_with("default-src 'none'; script-src 'self'; style-src 'self';")
            );
            assert_eq!(r.headers()[http::header::X_FRAME_OPTIONS], "DENY");
        }
        let missing = c.serve(Some("../Cargo.toml"));
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert!(
            missing
                .headers()
                .contains_key(http::header::CONTENT_SECURITY_POLICY)
        );
    }

    #[test]
    fn the_script_never_parses_strings_as_html_or_code() {
        let js = ASSETS.iter().find(|a| a.name == "console.js").unwrap().body;
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "localStorage.setItem",
            "document.cookie",
        ] {
            assert!(!js.contains(sink), "console.js uses {sink}");
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let page = INDEX.body;
        assert!(!page.contains("<script>") && !page.contains("<style"));
        assert!(!page.contains("style="), "no style attributes");
        let handler = page.split_whitespace().any(|word| {
            word.strip_prefix("on")
                .and_then(|rest| rest.split_once('='))
                .is_some_and(|(name, _)| name.chars().all(|c| c.is_ascii_lowercase()))
        });
        assert!(!handler, "no inline event handlers");
        assert!(page.contains(r#"<script src="./console/console.js" defer></script>"#));
    }
}
