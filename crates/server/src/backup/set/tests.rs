//! The sets' names, manifests and pruning.

use super::*;

/// `text` (RFC 3339) in UTC.
fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("time")
        .with_timezone(&Utc)
}

#[test]
fn names_sort_by_time_and_pruning_keeps_the_newest_complete_sets() {
    let dir = tempfile::tempdir().expect("dir");
    let t0 = utc("2026-12-01T10:15:00.5Z");
    let names: Vec<String> = (0..5)
        .map(|i| name_at(t0 + chrono::Duration::seconds(i * 90)))
        .collect();
    assert_eq!(names[0], "liveops-20261201T101500.500Z");
    for n in &names {
        std::fs::create_dir(dir.path().join(n)).expect("set");
        std::fs::write(dir.path().join(n).join(MANIFEST), "{}").expect("manifest");
    }
    // A set still being written is neither counted nor (while fresh) deleted.
    std::fs::create_dir(partial_dir(dir.path(), "liveops-x")).expect("partial");
    assert_eq!(complete_sets(dir.path()).expect("sets"), names);
    assert_eq!(prune(dir.path(), 2).expect("prune"), names[..3].to_vec());
    assert_eq!(
        complete_sets(dir.path()).expect("sets"),
        names[3..].to_vec()
    );
    assert!(partial_dir(dir.path(), "liveops-x").exists());
}

/// Pre-upgrade sets are not counted among `BACKUP_KEEP`: ordinary runs never prune them,
/// and the newest [`PRE_UPGRADE_KEEP`] of them stay, by time whatever their migrations.
#[test]
fn pruning_keeps_the_newest_pre_upgrade_sets_apart_from_the_ordinary_ones() {
    let dir = tempfile::tempdir().expect("dir");
    let at = |minutes| utc("2026-12-01T10:15:00Z") + chrono::Duration::minutes(minutes);
    let upgrade = |from_migration, to_migration| PreUpgrade {
        from_migration,
        to_migration,
    };
    let complete = |name: &str| {
        std::fs::create_dir(dir.path().join(name)).expect("set");
        std::fs::write(dir.path().join(name).join(MANIFEST), "{}").expect("manifest");
        name.to_owned()
    };
    // Four upgrades (the last a rollback's second try: an older schema, a later time).
    let pre: Vec<String> = [
        (0, upgrade(9, 12)),
        (60, upgrade(12, 15)),
        (120, upgrade(15, 18)),
        (180, upgrade(12, 18)),
    ]
    .into_iter()
    .map(|(m, u)| complete(&pre_upgrade_name_at(at(m), u)))
    .collect();
    assert_eq!(pre[0], "pre-upgrade-0009-0012-20261201T101500.000Z");
    let ordinary: Vec<String> = (0..4).map(|i| complete(&name_at(at(200 + i)))).collect();

    assert_eq!(complete_sets(dir.path()).expect("sets"), ordinary);
    assert_eq!(pre_upgrade_sets(dir.path()).expect("sets"), pre);
    let gone = prune(dir.path(), 1).expect("prune");
    assert_eq!(gone, [&ordinary[..3], &pre[..1]].concat());
    assert_eq!(complete_sets(dir.path()).expect("sets"), ordinary[3..]);
    assert_eq!(pre_upgrade_sets(dir.path()).expect("sets"), pre[1..]);
    // Pruned again (the next run): the pre-upgrade sets stay.
    assert!(prune(dir.path(), 1).expect("prune").is_empty());
}

/// A set stamped in the future (taken while a clock was ahead) would sort newest for ever and
/// hold one of the `keep` places that restore refuses to use: it is pruned first.
#[test]
fn a_set_stamped_in_the_future_is_pruned_before_the_others() {
    let dir = tempfile::tempdir().expect("dir");
    let now = Utc::now();
    let names: Vec<String> = [
        now - chrono::Duration::hours(3),
        now - chrono::Duration::hours(2),
        now - chrono::Duration::hours(1),
        now + chrono::Duration::days(1),
    ]
    .into_iter()
    .map(name_at)
    .collect();
    for n in &names {
        std::fs::create_dir(dir.path().join(n)).expect("set");
        std::fs::write(dir.path().join(n).join(MANIFEST), "{}").expect("manifest");
    }
    let gone = prune(dir.path(), 2).expect("prune");
    assert_eq!(gone, vec![names[3].clone(), names[0].clone()]);
    assert_eq!(
        complete_sets(dir.path()).expect("sets"),
        names[1..3].to_vec()
    );
}
