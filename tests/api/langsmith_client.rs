//! The LangSmith client against a recording fake: the exact request, the headers, and the retry
//! policy for 200 / 422 / 429 + Retry-After / 500 / a hang.

use crate::helpers::fakes::{Reply, fake_langsmith};
use crate::helpers::init;
use feedback_dispatch::Retryable;
use feedback_dispatch::{Category, FeedbackConfig, FeedbackKey, RunId};
use feedback_dispatch::{ExpiresIn, LangSmithClient, LangSmithError, TokenRequest};
use secrecy::SecretString;
use serde_json::json;
use std::time::{Duration, Instant};

const RUN: &str = "21d04a73-4101-4c4b-8915-bc8f5010a2dd";

fn client(base: &str, workspace: Option<&str>, timeout: Duration) -> LangSmithClient {
    init();
    // A self-hosted style base with /api/v1 exercises endpoint normalization too.
    let base = feedback_dispatch::normalize_endpoint(&format!("{base}/api/v1/")).unwrap();
    LangSmithClient::new(
        &base,
        Some(SecretString::from("lsv2_test_key")),
        workspace.map(str::to_string),
        timeout,
        3,
    )
    .unwrap()
    .with_backoff_base(Duration::from_millis(10))
}

fn requests() -> Vec<TokenRequest> {
    let run = RunId::parse(RUN).unwrap();
    vec![
        TokenRequest {
            run_id: run,
            feedback_key: FeedbackKey::parse("thumbs_up").unwrap(),
            expires_in: Some(ExpiresIn::from_duration(Duration::from_secs(7 * 86400))),
            expires_at: None,
            feedback_config: None,
        },
        TokenRequest {
            run_id: run,
            feedback_key: FeedbackKey::parse("correctness").unwrap(),
            expires_in: Some(ExpiresIn::from_duration(Duration::from_secs(36 * 3600 + 90))),
            expires_at: None,
            feedback_config: Some(FeedbackConfig::Categorical {
                categories: vec![
                    Category {
                        value: 1.0,
                        label: Some("correct".into()),
                    },
                    Category {
                        value: 0.0,
                        label: Some("wrong".into()),
                    },
                ],
            }),
        },
    ]
}

#[tokio::test]
async fn all_keys_of_a_run_go_in_one_request_with_the_exact_body_and_headers() {
    let fake = fake_langsmith().await;
    let tokens = client(&fake.address, Some("ws-123"), Duration::from_secs(5))
        .mint(&requests())
        .await
        .unwrap();

    let sent = fake.requests();
    assert_eq!(sent.len(), 1);
    let req = &sent[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/api/v1/feedback/tokens");
    assert_eq!(req.header("x-api-key").as_deref(), Some("lsv2_test_key"));
    assert_eq!(req.header("x-tenant-id").as_deref(), Some("ws-123"));
    assert_eq!(req.header("content-type").as_deref(), Some("application/json"));
    assert_eq!(
        req.json(),
        json!([
            {"run_id": RUN, "feedback_key": "thumbs_up", "expires_in": {"days": 7, "hours": 0, "minutes": 0}, "expires_at": null, "feedback_config": null},
            {"run_id": RUN, "feedback_key": "correctness", "expires_in": {"days": 1, "hours": 12, "minutes": 2}, "expires_at": null,
             "feedback_config": {"type": "categorical", "categories": [{"value": 1.0, "label": "correct"}, {"value": 0.0, "label": "wrong"}]}}
        ])
    );
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0].feedback_key.as_str(), "thumbs_up");
    assert_eq!(tokens[1].feedback_key.as_str(), "correctness");
    assert!(tokens[1].url.as_str().ends_with(&tokens[1].id.to_string()));
    // The fake answers naive UTC with microseconds ("2026-11-29T12:15:02.417733"), read as UTC.
    let left = (tokens[0].expires_at - chrono::Utc::now()).num_minutes();
    assert!((178..=180).contains(&left), "{left} minutes");
    assert_eq!(
        tokens[0].expires_at.timestamp_subsec_nanos() % 1_000,
        0,
        "microseconds, as sent"
    );
}

#[tokio::test]
async fn no_workspace_means_no_tenant_header() {
    let fake = fake_langsmith().await;
    client(&fake.address, None, Duration::from_secs(5))
        .mint(&requests()[..1])
        .await
        .unwrap();
    assert_eq!(fake.requests()[0].header("x-tenant-id"), None);
}

#[tokio::test]
async fn replies_in_another_order_are_matched_by_key() {
    let fake = fake_langsmith().await;
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    fake.push([Reply::json(200, json!([
        {"id": b, "url": format!("https://x.example/api/v1/feedback/tokens/{b}"), "expires_at": "2030-01-01T00:00:00+00:00", "feedback_key": "correctness", "extra": 1},
        {"id": a, "url": format!("https://x.example/api/v1/feedback/tokens/{a}"), "expires_at": "2030-01-01T00:00:00+00:00", "feedback_key": "thumbs_up"}
    ]))]);
    let tokens = client(&fake.address, None, Duration::from_secs(5))
        .mint(&requests())
        .await
        .unwrap();
    assert_eq!((tokens[0].id, tokens[1].id), (a, b));
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_then_retried() {
    let fake = fake_langsmith().await;
    fake.push([Reply::json(429, json!({"detail": "Too many requests"})).header("retry-after", "1")]);
    let started = Instant::now();
    let tokens = client(&fake.address, None, Duration::from_secs(5))
        .mint(&requests())
        .await
        .unwrap();
    assert_eq!(tokens.len(), 2);
    assert_eq!(fake.requests().len(), 2, "one 429, one success");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After honoured: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_500_is_retried_up_to_max_attempts_then_reported_as_retryable() {
    let fake = fake_langsmith().await;
    fake.push((0..3).map(|_| Reply::json(500, json!({"detail": "boom"}))));
    let err = client(&fake.address, None, Duration::from_secs(5))
        .mint(&requests())
        .await
        .unwrap_err();
    assert_eq!(fake.requests().len(), 3, "max_attempts = 3");
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("500"), "{err}");
}

#[tokio::test]
async fn a_transient_500_then_200_succeeds() {
    let fake = fake_langsmith().await;
    fake.push([Reply::json(503, json!({"detail": "unavailable"}))]);
    let tokens = client(&fake.address, None, Duration::from_secs(5))
        .mint(&requests())
        .await
        .unwrap();
    assert_eq!(tokens.len(), 2);
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn a_422_is_permanent_and_not_retried() {
    let fake = fake_langsmith().await;
    fake.push([Reply::json(422, json!({"detail": [{"loc": ["body", 0, "run_id"], "msg": "value is not a valid uuid", "type": "type_error.uuid"}]}))]);
    let err = client(&fake.address, None, Duration::from_secs(5))
        .mint(&requests())
        .await
        .unwrap_err();
    assert_eq!(fake.requests().len(), 1);
    assert!(!err.is_retryable());
    assert!(
        err.to_string().contains("422") && err.to_string().contains("not a valid uuid"),
        "{err}"
    );
}

#[tokio::test]
async fn auth_failures_name_the_variable_to_fix() {
    let fake = fake_langsmith().await;
    fake.push([Reply::json(401, json!({"detail": "Invalid token"}))]);
    let err = client(&fake.address, None, Duration::from_secs(5))
        .mint(&requests())
        .await
        .unwrap_err();
    assert!(matches!(err, LangSmithError::Auth { status: 401, .. }));
    assert!(err.to_string().contains("LANGSMITH_API_KEY"), "{err}");
    fake.push([Reply::json(403, json!({"error": "org_scoped_key_requires_workspace"}))]);
    let err = client(&fake.address, None, Duration::from_secs(5))
        .mint(&requests())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("LANGSMITH_WORKSPACE_ID"), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(fake.requests().len(), 2, "auth errors are not retried");
}

#[tokio::test]
async fn a_hang_times_out_and_is_retried() {
    let fake = fake_langsmith().await;
    fake.push([Reply::json(200, json!([])).delayed(Duration::from_secs(5))]);
    let started = Instant::now();
    let tokens = client(&fake.address, None, Duration::from_millis(300))
        .mint(&requests())
        .await
        .unwrap();
    assert_eq!(tokens.len(), 2);
    assert_eq!(fake.requests().len(), 2, "the hung request, then the retry");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the timeout cut the hang short"
    );
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    init();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = client(&format!("http://127.0.0.1:{port}"), None, Duration::from_secs(2))
        .mint(&requests())
        .await
        .unwrap_err();
    assert!(matches!(err, LangSmithError::Connect(_)), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_reply_with_too_few_tokens_is_an_error() {
    let fake = fake_langsmith().await;
    fake.push([Reply::json(200, json!([]))]);
    let err = client(&fake.address, None, Duration::from_secs(5))
        .mint(&requests())
        .await
        .unwrap_err();
    assert!(matches!(err, LangSmithError::InvalidResponse(_)), "{err}");
}
