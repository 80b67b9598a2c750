//! The local stack's API over real HTTP on loopback: the gateway behaves like
//! API Gateway with a JWT authorizer in front of the same handler.

use std::sync::Arc;

use local_infra::dev_sign_in::{self, DevSignIn};
use local_infra::{gateway, jwt};
use serde_json::{Value, json};
use subscriptions_api::{ApiConfig, App};
use test_kit::emulator;
use test_kit::stack::{self, ids};

/// The JSON body of the answer to `req`.
async fn json_of(req: reqwest::RequestBuilder) -> Value {
    req.send().await.unwrap().json().await.unwrap()
}

async fn serve() -> (String, tokio::sync::oneshot::Sender<()>) {
    serve_with(None).await
}

/// The gateway, with the console's one-time sign-in when `dev` is given.
async fn serve_with(dev: Option<Arc<DevSignIn>>) -> (String, tokio::sync::oneshot::Sender<()>) {
    let client = emulator::dynamodb().await;
    let sqs = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
    let stack = stack::deploy().await;
    let config = ApiConfig::from_vars(&stack.function(ids::API_FUNCTION).unwrap().vars_with(&[(
        "CURSOR_SIGNING_KEY",
        "gateway-test-cursor-signing-key-0123456789".to_owned(),
    )]))
    .unwrap();
    let events = aws_sdk_eventbridge::Client::new(&emulator::sdk_config().await);
    let vault = stack::secret_vault(&stack).await;
    let app = Arc::new(App::new(config, client, sqs, events, vault));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(gateway::serve(
        listener,
        local_stack::pipeline::api_handler(app),
        gateway::PublicRoutes::of(&stack),
        dev,
        async {
            let _ = stopped.await;
        },
    ));
    (base, stop)
}

#[tokio::test]
async fn requests_without_a_bearer_token_are_rejected_before_the_function() {
    let (base, _stop) = serve().await;
    let http = reqwest::Client::new();
    for auth in [None, Some("Basic dXNlcjpwdw=="), Some("Bearer not-a-jwt")] {
        let mut req = http.get(format!("{base}/webhooks"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body, json!({"message": "Unauthorized"}));
    }
}

#[tokio::test]
async fn dev_tokens_reach_the_api_with_their_company() {
    let (base, _stop) = serve().await;
    let http = reqwest::Client::new();
    let acme = format!("Bearer {}", jwt::dev_token("acme", "company_id"));
    let globex = format!("Bearer {}", jwt::dev_token("globex", "company_id"));
    for i in 0..3 {
        let r = http
            .post(format!("{base}/webhooks"))
            .header("authorization", &acme)
            .json(&json!({"url": format!("https://hooks.example.com/{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // Query strings reach the handler, cursors included.
    let page: Value = json_of(
        http.get(format!("{base}/webhooks?limit=2&status=active"))
            .header("authorization", &acme),
    )
    .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest: Value = json_of(
        http.get(format!("{base}/webhooks"))
            .query(&[("limit", "2"), ("status", "active"), ("cursor", cursor)])
            .header("authorization", &acme),
    )
    .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next_cursor"], Value::Null);

    let other: Value = json_of(
        http.get(format!("{base}/webhooks"))
            .header("authorization", &globex),
    )
    .await;
    assert_eq!(other["data"], json!([]));

    // A token without the company claim passes the gateway; the function says 401.
    let no_company = format!("Bearer {}", jwt::dev_token("acme", "org_id"));
    let r = http
        .get(format!("{base}/job-types"))
        .header("authorization", no_company)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn the_console_is_the_only_route_served_without_a_token() {
    let (base, _stop) = serve().await;
    let http = reqwest::Client::new();
    for (path, content_type) in [
        ("/console", "text/html; charset=utf-8"),
        ("/console/console.js", "text/javascript; charset=utf-8"),
        ("/console/config.json", "application/json"),
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], content_type, "{path}");
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(
            csp.starts_with("default-src 'none'; script-src 'self'"),
            "{csp}"
        );
    }
    // The template has no console client id here, and this gateway offers
    // no development sign-in: the console has no sign-in, as deployed.
    let settings: Value = json_of(http.get(format!("{base}/console/config.json"))).await;
    assert_eq!(settings, json!({"oidc": null, "parked_retention_days": 30}));
    let r = http
        .get(format!("{base}/console/secrets.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Every other route still needs the token, the catalogue included.
    for path in ["/event-types", "/job-types", "/webhooks", "/console/x/y"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = http.post(format!("{base}/console")).send().await.unwrap();
    assert_eq!(r.status(), 401, "only GET is public");
}

#[tokio::test]
async fn the_local_gateway_alone_exchanges_one_time_console_codes() {
    let dev = Arc::new(DevSignIn::new("company_id"));
    let (base, _stop) = serve_with(Some(Arc::clone(&dev))).await;
    let http = reqwest::Client::new();
    let settings: Value = json_of(http.get(format!("{base}/console/config.json"))).await;
    assert_eq!(
        settings["dev_sign_in"],
        json!({"path": dev_sign_in::PATH, "code_ttl_seconds": 300})
    );
    assert_eq!(settings["parked_retention_days"], 30);

    let link = dev.link(&base, "acme");
    let code = link
        .strip_prefix(&format!("{base}/console#dev-code="))
        .unwrap();
    let exchange = |code: &str| {
        http.post(format!("{base}{}", dev_sign_in::PATH))
            .json(&json!({ "code": code }))
            .send()
    };
    let r = exchange(code).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let token: Value = r.json().await.unwrap();
    let token = token["token"].as_str().unwrap();
    assert_eq!(jwt::claims_unverified(token).unwrap()["company_id"], "acme");
    // The token it gave works against the API.
    let r = http
        .get(format!("{base}/webhooks"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Once only.
    let again = exchange(code).await.unwrap();
    assert_eq!(again.status(), 400);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_code");
}

#[tokio::test]
async fn without_development_sign_in_there_is_no_exchange() {
    let dev = DevSignIn::new("company_id");
    let code = dev.issue("acme");
    let (base, _stop) = serve().await;
    let r = reqwest::Client::new()
        .post(format!("{base}{}", dev_sign_in::PATH))
        .json(&json!({ "code": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the API has no such public route");
}
