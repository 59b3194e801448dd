//! The embedded LangSmith-compatible token service over real HTTP on a spawned app.

use crate::helpers::spawn_app;
use serde_json::{Value, json};

const RUN: &str = "48e634f2-5e02-4906-9459-560834f2c995";

#[tokio::test]
async fn a_single_token_is_created_and_a_get_on_its_url_records_feedback() {
    let app = spawn_app("").await;
    let res = app
        .post_json(
            "/api/v1/feedback/tokens",
            &json!({"run_id": RUN, "feedback_key": "thumbs_up"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let token: Value = res.json().await.unwrap();
    let url = token["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/api/v1/feedback/tokens/", app.address)),
        "{url}"
    );
    assert_eq!(token["feedback_key"], "thumbs_up");
    // LangSmith's default lifetime is three hours.
    let expires = chrono::DateTime::parse_from_rfc3339(token["expires_at"].as_str().unwrap()).unwrap();
    let left = expires.signed_duration_since(chrono::Utc::now()).num_minutes();
    assert!((175..=180).contains(&left), "{left} minutes");

    let res = app.fetch(&format!("{url}?score=1&comment=nice")).await;
    assert_eq!(res.status(), 200);
    let feedback: Value = app.get_json(&format!("/api/v1/feedback?run={RUN}")).await;
    assert_eq!(feedback.as_array().unwrap().len(), 1);
    assert_eq!(feedback[0]["key"], "thumbs_up");
    assert_eq!(feedback[0]["score"], 1.0);
    assert_eq!(feedback[0]["comment"], "nice");
    assert_eq!(feedback[0]["run_id"], RUN);
    for field in ["id", "created_at", "modified_at", "trace_id"] {
        assert!(feedback[0].get(field).is_some(), "{field}");
    }
}

#[tokio::test]
async fn an_array_request_gets_an_array_reply_in_request_order() {
    let app = spawn_app("").await;
    let later = (chrono::Utc::now() + chrono::Duration::days(30))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let res = app
        .post_json(
            "/feedback/tokens",
            &json!([
                {"run_id": RUN, "feedback_key": "a", "expires_in": {"days": 7, "hours": 0, "minutes": 0}},
                {"run_id": RUN, "feedback_key": "b", "expires_at": later, "expires_in": null},
                {"run_id": RUN, "feedback_key": "c", "feedback_config": {"type": "continuous", "min": 1, "max": 5}}
            ]),
        )
        .await;
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    let keys: Vec<&str> = tokens
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["feedback_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["a", "b", "c"]);
    assert!(
        tokens[1]["expires_at"].as_str().unwrap().starts_with(&later),
        "naive times are UTC"
    );

    let listed: Value = app.get_json(&format!("/api/v1/feedback/tokens?run_id={RUN}")).await;
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_eq!(listed[0]["id"], tokens[0]["id"]);
    let page: Value = app
        .get_json(&format!("/api/v1/feedback/tokens?run_id={RUN}&limit=1&offset=2"))
        .await;
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["feedback_key"], "c");
}

#[tokio::test]
async fn submissions_by_post_and_get_are_validated_against_the_feedback_config() {
    let app = spawn_app("").await;
    let tokens: Value = app.create_tokens(&json!([
                {"run_id": RUN, "feedback_key": "user_score", "feedback_config": {"type": "continuous", "min": 1, "max": 5}},
                {"run_id": RUN, "feedback_key": "correctness", "feedback_config": {"type": "categorical", "categories": [{"value": 1, "label": "correct"}, {"value": 0, "label": "wrong"}]}}
            ])).await;
    let score_url = tokens[0]["url"].as_str().unwrap();
    let cat_url = tokens[1]["url"].as_str().unwrap();

    let too_high = app.fetch(&format!("{score_url}?score=9")).await;
    assert_eq!(too_high.status(), 422);
    let body: Value = too_high.json().await.unwrap();
    assert!(
        body["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("outside the range 1 to 5"),
        "{body}"
    );

    let res = app
        .http
        .post(score_url)
        .json(&json!({"score": 4, "comment": "good", "metadata": {"via": "test"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app.fetch(&format!("{cat_url}?score=0&value=wrong")).await;
    assert_eq!(res.status(), 200);
    let res = app.fetch(&format!("{cat_url}?score=1&value=maybe")).await;
    assert_eq!(res.status(), 422);
    let res = app.fetch(&format!("{cat_url}?score=high")).await;
    assert_eq!(res.status(), 422);
    let res = app.fetch(cat_url).await;
    assert_eq!(res.status(), 422, "nothing to record");

    let feedback: Value = app.get_json(&format!("/api/v1/feedback?run={RUN}")).await;
    let got: Vec<(String, f64, Value)> = feedback
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["key"].as_str().unwrap().to_string(),
                f["score"].as_f64().unwrap(),
                f["value"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("user_score".into(), 4.0, Value::Null),
            ("correctness".into(), 0.0, json!("wrong"))
        ]
    );
    assert_eq!(feedback[0]["feedback_source"]["metadata"]["via"], "test");
    let only: Value = app.get_json(&format!("/feedback?run={RUN}&key=correctness")).await;
    assert_eq!(only.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_token_can_be_used_many_times() {
    let app = spawn_app("").await;
    let token: Value = app
        .create_tokens(&json!({"run_id": RUN, "feedback_key": "thumbs_up"}))
        .await;
    let url = token["url"].as_str().unwrap();
    for _ in 0..3 {
        assert_eq!(app.fetch(&format!("{url}?score=1")).await.status(), 200);
    }
    let feedback: Value = app.get_json(&format!("/api/v1/feedback?run={RUN}")).await;
    assert_eq!(feedback.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn unknown_expired_and_malformed_tokens_get_404() {
    let app = spawn_app("").await;
    let unknown = uuid::Uuid::new_v4();
    for path in [
        format!("/api/v1/feedback/tokens/{unknown}?score=1"),
        "/api/v1/feedback/tokens/not-a-uuid?score=1".to_string(),
    ] {
        let res = app.get(&path).await;
        assert_eq!(res.status(), 404, "{path}");
        let body: Value = res.json().await.unwrap();
        assert!(body["detail"].is_string());
    }
    // An expired token: store one directly with a past expiry.
    let id = uuid::Uuid::new_v4();
    let now = chrono::Utc::now();
    app.store
        .insert_tokens(&[feedback_dispatch::StoredToken {
            id,
            run_id: feedback_dispatch::RunId::parse(RUN).unwrap(),
            feedback_key: "thumbs_up".into(),
            feedback_config: None,
            expires_at: now - chrono::Duration::seconds(1),
            created_at: now - chrono::Duration::hours(3),
        }])
        .await
        .unwrap();
    assert_eq!(
        app.get(&format!("/api/v1/feedback/tokens/{id}?score=1")).await.status(),
        404
    );
}

#[tokio::test]
async fn invalid_create_requests_get_422_naming_the_field() {
    let app = spawn_app("").await;
    let cases = [
        (json!({"feedback_key": "k"}), "run_id"),
        (json!({"run_id": "../etc", "feedback_key": "k"}), "run_id"),
        (json!({"run_id": RUN}), "feedback_key"),
        (
            json!([{"run_id": RUN, "feedback_key": "k"}, {"run_id": RUN, "feedback_key": "k", "expires_in": {"days": "x"}}]),
            "expires_in",
        ),
        (
            json!({"run_id": RUN, "feedback_key": "k", "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (
            json!({"run_id": RUN, "feedback_key": "k", "feedback_config": {"type": "stars"}}),
            "feedback_config",
        ),
        (json!(42), "body"),
    ];
    for (body, field) in cases {
        let res = app.post_json("/api/v1/feedback/tokens", &body).await;
        assert_eq!(res.status(), 422, "{body}");
        let reply: Value = res.json().await.unwrap();
        let loc = reply["detail"][0]["loc"].as_array().unwrap();
        assert_eq!(loc.last().unwrap(), field, "{body}: {reply}");
    }
    // Nothing was stored by the failed batch.
    let listed: Value = app.get_json(&format!("/api/v1/feedback/tokens?run_id={RUN}")).await;
    assert_eq!(listed.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn a_browser_click_gets_a_readable_page() {
    let app = spawn_app("").await;
    let token: Value = app
        .create_tokens(&json!({"run_id": RUN, "feedback_key": "thumbs_up"}))
        .await;
    let res = app
        .http
        .get(format!("{}?score=1", token["url"].as_str().unwrap()))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = res.text().await.unwrap();
    assert!(
        page.contains("feedback was recorded") && page.contains("thumbs_up"),
        "{page}"
    );
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app("").await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
}
