//! Keys with the same environment and policy share one established policy in
//! the index, whether they were loaded at start or created later (10,000 keys
//! with the defaults would otherwise hold 10,000 copies of them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use keyward_core::policy::KeyPolicy;
use keyward_gateway::keys::{KeyUpdate, NewKey};
use keyward_gateway::App;
use keyward_store::SqliteStore;
use std::sync::Arc;

fn new_key(env: &str, policy: KeyPolicy) -> NewKey {
    NewKey {
        service: "svc".into(),
        env: env.into(),
        name: None,
        expires_in: None,
        rotate_every: None,
        deliver_to: None,
        policy,
    }
}

#[tokio::test]
async fn keys_with_the_same_policy_share_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || keyward_core::config::Config::from_toml("", dir.path()).unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("kw.db")).unwrap());
    let master = keyward_core::crypto::MasterKey::generate();
    let (app, _writer) = App::load(cfg(), store.clone(), &master).await.unwrap();
    let actor = keyward_gateway::audit::Actor::system("test");
    app.create_service(&actor, "svc", "team").await.unwrap();
    let limited = || KeyPolicy { rpm: Some(10), ..Default::default() };
    let mut ids = Vec::new();
    for (env, policy) in [("dev", KeyPolicy::default()), ("dev", KeyPolicy::default()), ("prod", KeyPolicy::default())]
        .into_iter()
        .chain([("dev", limited()), ("dev", limited())])
    {
        ids.push(app.create_key(&actor, new_key(env, policy)).await.unwrap().0.id);
    }
    let policies = |app: &App| ids.iter().map(|id| app.keys.get(id).unwrap().policy()).collect::<Vec<_>>();
    let p = policies(&app);
    assert!(Arc::ptr_eq(&p[0], &p[1]), "same environment, same policy");
    assert!(!Arc::ptr_eq(&p[0], &p[2]), "another environment");
    assert!(Arc::ptr_eq(&p[3], &p[4]) && !Arc::ptr_eq(&p[0], &p[3]), "another policy");
    assert_eq!(p[3].policy.rpm, Some(10));

    // an update moves one key to its own policy and leaves the other's alone
    let u = KeyUpdate { rpm: Some(Some(20)), ..Default::default() };
    app.update_key(&actor, &ids[4], u).await.unwrap();
    let p = policies(&app);
    assert!(!Arc::ptr_eq(&p[3], &p[4]));
    assert_eq!((p[3].policy.rpm, p[4].policy.rpm), (Some(10), Some(20)));

    // loaded at start, from the store, they share alike
    drop(p);
    let (again, _writer) = App::load(cfg(), store, &master).await.unwrap();
    let p = policies(&again);
    assert!(Arc::ptr_eq(&p[0], &p[1]) && !Arc::ptr_eq(&p[0], &p[2]) && !Arc::ptr_eq(&p[3], &p[4]));
}
