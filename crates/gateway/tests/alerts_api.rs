//! Router tests of the alerts API: listing with `?open=true`, getting one,
//! acknowledging, and the role checks (auditor reads, ack is a write).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use http_body_util::BodyExt;
use keyward_gateway::App;
use keyward_store::{AlertRow, SqliteStore, Store};
use secrecy::ExposeSecret;
use std::sync::Arc;
use tower::ServiceExt;

fn alert(id: &str, dedup: &str) -> AlertRow {
    AlertRow {
        id: id.into(),
        dedup_key: dedup.into(),
        rule: "rpm".into(),
        severity: "warning".into(),
        key_id: Some("key_a".into()),
        upstream: None,
        summary: "42 requests in the last minute".into(),
        value: 42.0,
        threshold: 20.0,
        action: None,
        status: "open".into(),
        raised_at_ms: 1_000,
        last_seen_ms: 1_000,
        resolved_at_ms: None,
        acked_at_ms: None,
        acked_by: None,
        occurrences: 1,
    }
}

async fn call(app: &Arc<App>, method: &str, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = http::Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = keyward_gateway::admin::router(app.clone())
        .oneshot(req.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn alerts_api_lists_gets_acks_and_checks_roles() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = keyward_core::config::Config::from_toml("", dir.path()).unwrap();
    let store = Arc::new(SqliteStore::open_in_memory().unwrap());
    store.raise_alert(&alert("alr_open", "d1"), &[]).await.unwrap();
    store.raise_alert(&alert("alr_done", "d2"), &[]).await.unwrap();
    store.resolve_alert("d2", 2_000, &[]).await.unwrap();
    let (app, _writer) = App::load(cfg, store, &keyward_core::crypto::MasterKey::generate()).await.unwrap();
    let test = keyward_gateway::audit::Actor::system("test");
    let token = |role: &str| keyward_gateway::state::NewToken { role: role.into(), ..Default::default() };
    let (_, owner) = app.create_token(&test, token("owner")).await.unwrap();
    let (auditor_view, auditor) = app.create_token(&test, token("auditor")).await.unwrap();
    let auditor_id = auditor_view.id;
    let (owner, auditor) = (owner.expose_secret().to_string(), auditor.expose_secret().to_string());

    let (st, v) = call(&app, "GET", "/admin/v1/alerts?open=true", Some(&auditor)).await;
    assert_eq!(st, 200);
    let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["alr_open"]);
    let (_, v) = call(&app, "GET", "/admin/v1/alerts", Some(&auditor)).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let (st, v) = call(&app, "GET", "/admin/v1/alerts/alr_done", Some(&auditor)).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("resolved")));
    assert_eq!(call(&app, "GET", "/admin/v1/alerts/alr_nope", Some(&auditor)).await.0, 404);
    assert_eq!(call(&app, "GET", "/admin/v1/alerts", None).await.0, 401);
    assert_eq!(call(&app, "GET", "/admin/v1/alerts?open=maybe", Some(&auditor)).await.0, 400);

    // acknowledging is a write: the auditor may not
    assert_eq!(call(&app, "POST", "/admin/v1/alerts/alr_open/ack", Some(&auditor)).await.0, 403);
    let (st, v) = call(&app, "POST", "/admin/v1/alerts/alr_open/ack", Some(&owner)).await;
    assert_eq!(st, 200);
    assert!(v["acked_at"].is_string());
    assert_ne!(v["acked_by"], auditor_id.as_str());
    assert_eq!(v["status"], "open", "acknowledged, still open until the condition clears");
    assert_eq!(call(&app, "POST", "/admin/v1/alerts/alr_nope/ack", Some(&owner)).await.0, 404);
}
