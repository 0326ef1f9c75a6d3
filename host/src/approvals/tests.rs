use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::state::sqlite::SqliteStore;

fn principal(id: &str, roles: &[&str]) -> Principal {
    Principal {
        id: id.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        claims: Default::default(),
        authenticated_by: "cli",
    }
}

fn pending(id: &str, approvers: u32, ttl: u64) -> Approval {
    let at = now();
    Approval {
        id: id.into(),
        plan_hash: "sha256:plan".into(),
        policy_digest: "sha256:policy".into(),
        tool: "restart_service".into(),
        component: "ops".into(),
        component_digest: "sha256:c".into(),
        principal: "agent".into(),
        environment: "prod".into(),
        args: json!({"name": "web"}),
        annotations: json!({"destructive": true}),
        requirement: ApprovalRequirement {
            approvers,
            reason: "prod change".into(),
            roles: vec!["sre".into()],
            ttl_s: Some(ttl),
            allow_self: false,
        },
        reasons: vec![],
        grants: json!({}),
        status: ApprovalStatus::Pending,
        created_at: at,
        expires_at: at + ttl,
        votes: vec![],
    }
}

async fn store_with(approval: Approval) -> Arc<dyn Store> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    assert_eq!(
        store.create_approval(approval, 10).await.unwrap(),
        crate::state::Created::New
    );
    store
}

#[tokio::test]
async fn two_distinct_approvers_with_the_role_approve() {
    let store = store_with(pending("ap_1", 2, 60)).await;
    let alice = principal("alice", &["sre"]);
    let a = vote(&store, "ap_1", &alice, true, None, "test".into())
        .await
        .unwrap();
    assert_eq!(a.status, ApprovalStatus::Pending);
    assert_eq!(
        status_message(&a),
        "waiting for 2 approvals from sre, 1 given"
    );
    // The same approver twice does not count twice.
    let again = vote(&store, "ap_1", &alice, true, None, "test".into()).await;
    assert!(
        matches!(again, Err(VoteError::AlreadyVoted(_))),
        "{again:?}"
    );
    let a = vote(
        &store,
        "ap_1",
        &principal("bob", &["sre"]),
        true,
        None,
        "t".into(),
    )
    .await
    .unwrap();
    assert_eq!(a.status, ApprovalStatus::Approved);
    assert!(satisfied(&a.requirement, &a.principal, &a.votes));
    // Approved but unused: more votes are taken (policy may ask for more); a denial still ends it.
    let carol = principal("carol", &["sre"]);
    let more = vote(&store, "ap_1", &carol, true, None, "t".into())
        .await
        .unwrap();
    assert_eq!(
        (more.status, more.votes.len()),
        (ApprovalStatus::Approved, 3)
    );
    let dave = principal("dave", &["sre"]);
    let no = vote(&store, "ap_1", &dave, false, None, "t".into())
        .await
        .unwrap();
    assert_eq!(no.status, ApprovalStatus::Denied);
    let erin = principal("erin", &["sre"]);
    let late = vote(&store, "ap_1", &erin, true, None, "t".into()).await;
    assert!(
        matches!(late, Err(VoteError::NotPending { .. })),
        "{late:?}"
    );
}

#[tokio::test]
async fn the_requester_and_approvers_without_the_role_are_refused() {
    let store = store_with(pending("ap_2", 1, 60)).await;
    let own = vote(
        &store,
        "ap_2",
        &principal("agent", &["sre"]),
        true,
        None,
        "t".into(),
    )
    .await;
    assert!(matches!(own, Err(VoteError::OwnCall(_))), "{own:?}");
    let role = vote(
        &store,
        "ap_2",
        &principal("dev", &["writer"]),
        true,
        None,
        "t".into(),
    )
    .await;
    assert!(
        matches!(role, Err(VoteError::MissingRole { .. })),
        "{role:?}"
    );
    let a = store.approval("ap_2".into()).await.unwrap().unwrap();
    assert!(a.votes.is_empty());
    assert_eq!(a.status, ApprovalStatus::Pending);
}

#[tokio::test]
async fn one_denial_denies_and_expiry_ends_voting() {
    let store = store_with(pending("ap_3", 2, 60)).await;
    let a = vote(
        &store,
        "ap_3",
        &principal("alice", &["sre"]),
        false,
        Some("not now".into()),
        "t".into(),
    )
    .await
    .unwrap();
    assert_eq!(a.status, ApprovalStatus::Denied);
    assert_eq!(status_message(&a), "denied by alice: not now");

    let mut old = pending("ap_4", 1, 60);
    old.expires_at = now() - 1;
    let store = store_with(old).await;
    let e = vote(
        &store,
        "ap_4",
        &principal("alice", &["sre"]),
        true,
        None,
        "t".into(),
    )
    .await;
    assert!(matches!(e, Err(VoteError::Expired(_))), "{e:?}");
}

#[tokio::test]
async fn self_approval_counts_only_when_the_requirement_allows_it() {
    let mut a = pending("ap_5", 1, 60);
    a.requirement.allow_self = true;
    let store = store_with(a).await;
    let a = vote(
        &store,
        "ap_5",
        &principal("agent", &["sre"]),
        true,
        None,
        "t".into(),
    )
    .await
    .unwrap();
    assert_eq!(a.status, ApprovalStatus::Approved);
    let mut strict = a.requirement.clone();
    strict.allow_self = false;
    assert!(!satisfied(&strict, &a.principal, &a.votes));
}

#[tokio::test]
async fn identical_calls_share_one_live_approval_and_a_principal_has_a_cap() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    let first = pending("ap_a", 1, 60);
    assert_eq!(
        store.create_approval(first.clone(), 2).await.unwrap(),
        crate::state::Created::New
    );
    let mut twin = pending("ap_b", 1, 60);
    twin.plan_hash = first.plan_hash.clone();
    match store.create_approval(twin, 2).await.unwrap() {
        crate::state::Created::Existing(live) => assert_eq!(live.id, "ap_a"),
        other => panic!("{other:?}"),
    }
    let mut other = pending("ap_c", 1, 60);
    other.plan_hash = "sha256:other".into();
    assert_eq!(
        store.create_approval(other, 2).await.unwrap(),
        crate::state::Created::New
    );
    let mut third = pending("ap_d", 1, 60);
    third.plan_hash = "sha256:third".into();
    assert_eq!(
        store.create_approval(third, 2).await.unwrap(),
        crate::state::Created::TooMany(2)
    );
}
