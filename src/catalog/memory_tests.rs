//! The catalogue's decisions over a real OpenDAL operator in memory (the storage seam): what a
//! listing calls good, what `latest` passes over, which chains are whole, whom trust believes,
//! and what prune deletes, with damaged, missing, planted and forged objects. Milliseconds each,
//! where the same cases through the binary and a server take seconds.

use std::time::{Duration, SystemTime};

use crate::catalog::{self, chains, Listed, Standing};
use crate::storage::destination::{Destination, Setup};
use crate::trust::{Signer, Verifier};

const HOST: &str = "web-1";

/// A namespace in memory, and the key its backups are signed with (when any).
struct Store {
    dest: Destination,
    signer: Option<Signer>,
}

/// What a stored backup builds on.
#[derive(Clone, Copy)]
enum Kind<'a> {
    Full,
    /// parent, full
    On(&'a str, &'a str),
}

fn ago(hours: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(hours * 3600)
}

impl Store {
    fn new() -> Store {
        Store {
            dest: Destination::in_memory("mem", HOST, Setup::default()),
            signer: None,
        }
    }

    /// Signing with a key the destination trusts.
    fn trusted() -> Store {
        let signer = Signer::generate().unwrap();
        let trust = Verifier::load(&[signer.public_line()], None).unwrap();
        Store {
            dest: Destination::in_memory("mem", HOST, Setup { trust, cache: None }),
            signer: Some(signer),
        }
    }

    fn sidecar(&self, id: &str, host: &str, kind: Kind, archive: &[u8]) -> Vec<u8> {
        let (version, kind, chain) = match kind {
            Kind::Full => (1, "full", String::new()),
            Kind::On(parent, full) => (
                2,
                "incremental",
                format!(r#""parent": "{parent}", "full": "{full}","#),
            ),
        };
        let created = jiff::Timestamp::try_from(catalog::id_time(id).unwrap()).unwrap();
        format!(
            r#"{{"format": "litevault-sidecar", "format_version": 1,
  "archive": {{"object": "{id}.tar.zst", "bytes": {}, "blake3": "{}", "compression": "zstd", "encryption": "none"}},
  "manifest": {{"format": "litevault", "format_version": {version}, "backup_id": "{id}",
    "created": "{created}", "host": "{host}", "hostname": "vm", "tool_version": "0.1.0",
    "kind": "{kind}", {chain} "sources": [], "files": [], "databases": []}}}}"#,
            archive.len(),
            blake3::hash(archive).to_hex(),
        )
        .into_bytes()
    }

    /// A complete backup taken `hours` ago: archive, signature (when signing), sidecar last.
    fn backup(&self, hours: u64, kind: Kind) -> String {
        self.backup_as(catalog::new_id(ago(hours)), HOST, kind)
    }

    fn backup_as(&self, id: String, host: &str, kind: Kind) -> String {
        let archive = format!("the archive of {id}").repeat(40).into_bytes();
        let sidecar = self.sidecar(&id, host, kind, &archive);
        self.dest.put(&format!("{id}.tar.zst"), archive).unwrap();
        if let Some(signer) = &self.signer {
            let sig = signer.sign(&sidecar).unwrap();
            self.dest.put(&format!("{id}.json.sig"), sig).unwrap();
        }
        self.dest.put(&format!("{id}.json"), sidecar).unwrap();
        id
    }

    /// A backup numbered `number` on this destination, after `previous`.
    fn numbered(&self, hours: u64, number: u64, previous: Option<&str>) -> String {
        let id = catalog::new_id(ago(hours));
        let archive = format!("the archive of {id}").repeat(40).into_bytes();
        let previous = previous
            .map(|p| {
                format!(
                    r#", "previous": {{"id": "{p}", "number": {}, "sidecar_blake3": "00"}}"#,
                    number - 1
                )
            })
            .unwrap_or_default();
        let sidecar = String::from_utf8(self.sidecar(&id, HOST, Kind::Full, &archive))
            .unwrap()
            .replacen(
                "{",
                &format!(r#"{{"sequence": {{"number": {number}{previous}}}, "#),
                1,
            );
        self.dest.put(&format!("{id}.tar.zst"), archive).unwrap();
        self.dest
            .put(&format!("{id}.json"), sidecar.into_bytes())
            .unwrap();
        id
    }

    fn standing(&self, id: &str) -> Standing {
        let listing = catalog::list(&self.dest).unwrap();
        listing
            .backups
            .iter()
            .find(|b| b.id == id)
            .unwrap_or_else(|| panic!("{id} is not listed"))
            .standing
            .clone()
    }

    fn latest(&self) -> (Option<String>, Vec<String>) {
        let (best, passed) = catalog::latest(&self.dest).unwrap();
        (
            best.map(|b| b.id),
            passed.into_iter().map(|p| p.id).collect(),
        )
    }

    /// Prune with `keep_last = n` on this destination; what it deleted, and what it calls for.
    fn prune(&self, keep_last: usize) -> (Vec<String>, crate::exit::Exit) {
        self.prune_with(&format!("keep_last = {keep_last}"))
    }

    /// Prune with the body of a `[retention]` table.
    fn prune_with(&self, retention: &str) -> (Vec<String>, crate::exit::Exit) {
        let text = format!(
            "name = \"{HOST}\"\nstate_dir = \"/nonexistent/state\"\n[[source]]\nname = \"a.db\"\npath = \"/nonexistent/a.db\"\nkind = \"sqlite\"\n[encryption]\nnone = true\n[retention]\n{retention}\n[[destination]]\nname = \"mem\"\nurl = \"file:///nonexistent\"\n"
        );
        let settings =
            crate::config::parse(&text, std::path::Path::new("/etc/litevault/t.toml")).unwrap();
        let report =
            crate::commands::prune::apply(&settings, std::slice::from_ref(&self.dest), false)
                .unwrap();
        let mut deleted = report.destinations[0].deleted.clone();
        deleted.sort();
        (deleted, report.findings)
    }

    fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = catalog::list(&self.dest)
            .unwrap()
            .backups
            .into_iter()
            .map(|b| b.id)
            .collect();
        ids.sort();
        ids
    }
}

#[test]
fn a_listing_judges_each_backup_and_latest_is_the_newest_good_one() {
    let s = Store::new();
    let good = s.backup(30, Kind::Full);
    let missing = s.backup(20, Kind::Full);
    s.dest.delete(&format!("{missing}.tar.zst")).unwrap();
    let short = s.backup(10, Kind::Full);
    s.dest
        .put(&format!("{short}.tar.zst"), b"cut short".to_vec())
        .unwrap();
    let foreign = s.backup_as(catalog::new_id(ago(5)), "db-1", Kind::Full);
    let future = s.backup_as(
        catalog::new_id(SystemTime::now() + Duration::from_secs(2 * 86400)),
        HOST,
        Kind::Full,
    );

    assert_eq!(s.standing(&good), Standing::Good);
    assert!(matches!(s.standing(&missing), Standing::Damaged(why) if why.contains("missing")));
    assert!(matches!(s.standing(&short), Standing::Damaged(why) if why.contains("bytes")));
    assert!(
        matches!(s.standing(&foreign), Standing::Foreign { host, .. } if host == "db-1"),
        "a sidecar naming another host is not this host's backup"
    );
    assert!(matches!(s.standing(&future), Standing::FutureDated(_)));

    let (best, passed) = s.latest();
    assert_eq!(best.as_deref(), Some(good.as_str()));
    for newer in [&missing, &short, &foreign, &future] {
        assert!(passed.contains(newer), "{newer} was not named: {passed:?}");
    }
    // Metrics and --if-older-than count only the good one.
    let summary = catalog::summary(&s.dest).unwrap();
    assert_eq!(summary.backups, 1);
}

#[test]
fn an_incremental_is_only_as_good_as_every_link_under_it() {
    let s = Store::new();
    let full = s.backup(30, Kind::Full);
    let one = s.backup(20, Kind::On(&full, &full));
    let two = s.backup(10, Kind::On(&one, &full));
    let listed = Listed::take(&s.dest).unwrap();
    let chain: Vec<String> = chains::resolve_in(&listed, &listed.get(&two).unwrap().unwrap())
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(chain, vec![full.clone(), one.clone(), two.clone()]);

    // The full backup's archive cut short: both links above it are broken, and say where.
    s.dest
        .put(&format!("{full}.tar.zst"), b"cut".to_vec())
        .unwrap();
    assert!(matches!(s.standing(&full), Standing::Damaged(_)));
    for link in [&one, &two] {
        assert!(
            matches!(s.standing(link), Standing::BrokenChain(_)),
            "{link} builds on a damaged backup"
        );
    }
    let listed = Listed::take(&s.dest).unwrap();
    let err = chains::resolve_in(&listed, &listed.get(&two).unwrap().unwrap()).unwrap_err();
    assert!(format!("{err:#}").contains(&full), "{err:#}");
    assert_eq!(s.latest().0, None, "nothing good is left");
}

#[test]
fn a_link_that_lost_its_sidecar_breaks_the_chain_and_its_archive_is_never_deleted() {
    let s = Store::new();
    let full = s.backup(40, Kind::Full);
    let one = s.backup(30, Kind::On(&full, &full));
    let two = s.backup(20, Kind::On(&one, &full));
    let newer = s.backup(10, Kind::Full);
    s.dest.delete(&format!("{one}.json")).unwrap();
    assert!(
        matches!(s.standing(&two), Standing::BrokenChain(why) if why.contains("lost its sidecar"))
    );
    let (deleted, findings) = s.prune(1);
    // The orphaned archive, the chain under it and the broken link all stay for a person.
    assert_eq!(deleted, Vec::<String>::new());
    assert_eq!(findings, crate::exit::Exit::Integrity);
    assert!(s.dest.stat(&format!("{one}.tar.zst")).unwrap().is_some());
    assert_eq!(s.ids(), {
        let mut v = vec![full, two, newer];
        v.sort();
        v
    });
}

#[test]
fn trust_believes_only_what_a_trusted_key_signed_over_these_exact_bytes() {
    let s = Store::trusted();
    let signed = s.backup(30, Kind::Full);
    assert_eq!(s.standing(&signed), Standing::Good);

    // Planted without a signature, signed by a stranger, or changed after signing.
    let unsigned = catalog::new_id(ago(20));
    let archive = b"planted".repeat(10);
    s.dest
        .put(&format!("{unsigned}.tar.zst"), archive.clone())
        .unwrap();
    s.dest
        .put(
            &format!("{unsigned}.json"),
            s.sidecar(&unsigned, HOST, Kind::Full, &archive),
        )
        .unwrap();
    let stranger = Store {
        dest: Destination::in_memory("scratch", HOST, Setup::default()),
        signer: Some(Signer::generate().unwrap()),
    };
    let forged = catalog::new_id(ago(10));
    let body = s.sidecar(&forged, HOST, Kind::Full, &archive);
    s.dest
        .put(&format!("{forged}.tar.zst"), archive.clone())
        .unwrap();
    s.dest
        .put(
            &format!("{forged}.json.sig"),
            stranger.signer.as_ref().unwrap().sign(&body).unwrap(),
        )
        .unwrap();
    s.dest.put(&format!("{forged}.json"), body).unwrap();
    let altered = s.backup(5, Kind::Full);
    let text = String::from_utf8(
        s.dest
            .read_small(&format!("{altered}.json"), 1 << 20)
            .unwrap(),
    )
    .unwrap()
    .replace("\"hostname\": \"vm\"", "\"hostname\": \"vn\"");
    s.dest
        .put(&format!("{altered}.json"), text.into_bytes())
        .unwrap();

    for id in [&unsigned, &forged, &altered] {
        assert!(
            matches!(s.standing(id), Standing::Untrusted(_)),
            "{id}: {:?}",
            s.standing(id)
        );
    }
    assert_eq!(s.latest().0.as_deref(), Some(signed.as_str()));
    // Prune keeps the one good backup and leaves the others for a person, exit 4.
    let (deleted, findings) = s.prune(1);
    assert!(deleted.is_empty(), "{deleted:?}");
    assert_eq!(findings, crate::exit::Exit::Integrity);
}

#[test]
fn prune_never_counts_a_damaged_newest_backup() {
    let s = Store::new();
    let old = s.backup(40, Kind::Full);
    let older_good = s.backup(30, Kind::Full);
    let newest_good = s.backup(20, Kind::Full);
    let damaged = s.backup(10, Kind::Full);
    s.dest.delete(&format!("{damaged}.tar.zst")).unwrap();
    let (deleted, findings) = s.prune(1);
    assert_eq!(deleted, {
        let mut v = vec![old, older_good];
        v.sort();
        v
    });
    assert_eq!(findings, crate::exit::Exit::Integrity);
    assert_eq!(s.latest().0.as_deref(), Some(newest_good.as_str()));
}

#[test]
fn prune_reads_the_newest_good_backup_before_deleting_anything() {
    let s = Store::new();
    let old = s.backup(30, Kind::Full);
    let middle = s.backup(20, Kind::Full);
    let newest = s.backup(10, Kind::Full);
    // A flipped byte of the same size: only reading the archive finds it.
    let name = format!("{newest}.tar.zst");
    let mut bytes = s.dest.read_small(&name, 1 << 20).unwrap();
    bytes[7] ^= 1;
    s.dest.put(&name, bytes).unwrap();
    assert_eq!(
        s.standing(&newest),
        Standing::Good,
        "the listing cannot tell"
    );
    let (deleted, findings) = s.prune(1);
    // The newest is damaged, so the one before it is the one kept; only the oldest goes.
    assert_eq!(deleted, vec![old]);
    assert_eq!(findings, crate::exit::Exit::Integrity);
    assert!(s.ids().contains(&middle) && s.ids().contains(&newest));
}

#[test]
fn an_unreadable_sidecar_keeps_everything_older_than_it() {
    let s = Store::new();
    let old = s.backup(40, Kind::Full);
    let older = s.backup(30, Kind::Full);
    let garbled = catalog::new_id(ago(20));
    s.dest
        .put(&format!("{garbled}.json"), b"{not json".to_vec())
        .unwrap();
    let newest = s.backup(10, Kind::Full);
    let (deleted, _) = s.prune(1);
    assert!(deleted.is_empty(), "{deleted:?}");
    assert_eq!(s.ids(), {
        let mut v = vec![old, older, newest];
        v.sort();
        v
    });
}

#[test]
fn a_prune_by_calendar_rules_is_no_finding_and_a_deleted_keeper_is_one() {
    use crate::catalog::sequence::{watch, Finding, Seen};
    let s = Store::new();
    let policy = crate::retention::Policy {
        keep_last: Some(3),
        keep_daily: Some(2),
        ..Default::default()
    };
    let mut previous: Option<String> = None;
    for (number, hours) in (1..=60u64).zip((0..60).rev()) {
        previous = Some(s.numbered(hours, number, previous.as_deref()));
    }
    let now = SystemTime::now();
    let look = |seen: &Seen| {
        watch(
            "mem",
            &catalog::list(&s.dest).unwrap().backups,
            seen,
            &policy,
            now,
        )
    };
    let first = look(&Seen::default());
    assert!(first.findings.is_empty(), "{:?}", first.findings);
    assert_eq!((first.newest, first.next.number), (Some(60), 61));

    let (deleted, _) = s.prune_with("keep_last = 3\nkeep_daily = 2");
    assert!(deleted.len() > 50, "{deleted:?}");
    // This host saw all 60; a fresh one saw none: neither calls the prune a theft.
    for seen in [&first.seen, &Seen::default()] {
        let after = look(seen);
        assert!(after.findings.is_empty(), "{:?}", after.findings);
    }

    // The one kept for yesterday goes out of turn: found, by its id.
    let kept = s.ids();
    let keeper = kept[0].clone();
    s.dest.delete(&format!("{keeper}.json")).unwrap();
    let after = look(&first.seen);
    assert!(
        matches!(&after.findings[..], [Finding::OutOfTurn { count: 1, missing, .. }]
            if missing[0].id.as_deref() == Some(keeper.as_str())),
        "{:?}",
        after.findings
    );

    // A line remembered absurdly far ahead is judged at once, and named in a bounded list.
    let huge = Seen {
        high: 1 << 50,
        ..Seen::default()
    };
    let rolled = look(&huge);
    match &rolled.findings[0] {
        Finding::RolledBack { count, missing, .. } => {
            assert_eq!(*count, (1 << 50) - 60);
            assert!(missing.len() <= 20);
        }
        other => panic!("{other:?}"),
    }
}
