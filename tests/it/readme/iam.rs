//! The README's three IAM policies, evaluated against every S3 request their roles' commands
//! make (seen through the logging proxy), so a policy that drifts from what litevault asks of
//! S3 fails here rather than on a locked-down bucket.

use serde_json::Value;

use super::readme_block;
use crate::faultproxy::FaultProxy;
use crate::harness::*;
use crate::servers::*;

/// An S3 request line from the proxy's log, as IAM sees it: the action, the object's ARN (or
/// the bucket's, for a listing) and the listing's prefix.
fn iam_request(line: &str) -> (String, String, Option<String>) {
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap();
    let target = parts.next().unwrap();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = path.trim_start_matches('/');
    let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(decode)
    };
    if key.is_empty() {
        // The bucket's own configuration, which `check` and `prune` read.
        for (sub, action) in [
            ("versioning", "s3:GetBucketVersioning"),
            ("object-lock", "s3:GetBucketObjectLockConfiguration"),
        ] {
            if method == "GET"
                && query
                    .split('&')
                    .any(|kv| kv == sub || kv == format!("{sub}="))
            {
                return (action.to_string(), format!("arn:aws:s3:::{bucket}"), None);
            }
        }
        let action = match method {
            "GET" | "HEAD" => "s3:ListBucket",
            "POST" if query.contains("delete") => "s3:DeleteObject",
            _ => "s3:(bucket) ",
        };
        let prefix = param("prefix").unwrap_or_default();
        return (
            action.to_string(),
            format!("arn:aws:s3:::{bucket}"),
            Some(prefix),
        );
    }
    let action = match method {
        "GET" | "HEAD" => "s3:GetObject",
        "PUT" | "POST" => "s3:PutObject",
        "DELETE" if query.contains("uploadId") => "s3:AbortMultipartUpload",
        "DELETE" => "s3:DeleteObject",
        other => panic!("an S3 request IAM has no action for: {other} {target}"),
    };
    (
        action.to_string(),
        format!("arn:aws:s3:::{bucket}/{}", decode(key)),
        None,
    )
}

/// `*` and `?` as IAM's `StringLike` and resource patterns match them.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether one of `statements` allows the request.
fn allowed(statements: &[Value], request: &(String, String, Option<String>)) -> bool {
    let (action, resource, prefix) = request;
    statements.iter().any(|s| {
        s["Effect"] == "Allow"
            && strings(&s["Action"]).contains(action)
            && strings(&s["Resource"]).iter().any(|r| glob(r, resource))
            && match (&s["Condition"]["StringLike"]["s3:prefix"], prefix) {
                (Value::Null, _) => true,
                (patterns, Some(p)) => strings(patterns).iter().any(|g| glob(g, p)),
                (_, None) => true,
            }
    })
}

fn statements(block: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(block)
        .unwrap_or_else(|e| panic!("the README's policy is not JSON ({e}):\n{block}"));
    if let Some(s) = v.get("Statement") {
        return s.as_array().unwrap().clone();
    }
    match v {
        // The maintenance block: the statements added to the restore policy.
        Value::Array(a) => a,
        v => vec![v],
    }
}

/// What `run` asked of S3 (through the logging proxy) that `policy` does not allow.
fn denied(proxy: &FaultProxy, policy: &[Value], run: impl FnOnce()) -> Vec<String> {
    let before = proxy.request_log().len();
    run();
    proxy.request_log()[before..]
        .iter()
        .filter(|l| !allowed(policy, &iam_request(l)))
        .cloned()
        .collect()
}

#[test]
fn the_iam_policies_allow_every_request_their_roles_make() {
    let backup = statements(&readme_block("iam-backup"));
    let restore = statements(&readme_block("iam-restore"));
    let mut maintenance = restore.clone();
    maintenance.extend(statements(&readme_block("iam-maintenance")));
    // The oracle itself: a listing outside the prefix and a delete are refused.
    assert!(!allowed(
        &backup,
        &iam_request("GET /backups-bucket?list-type=2&prefix=litevault%2Fdb-1%2F HTTP/1.1")
    ));
    assert!(!allowed(
        &backup,
        &iam_request("DELETE /backups-bucket/litevault/web-1/x.json HTTP/1.1")
    ));
    // Reading the bucket's versioning is its own action, not a listing.
    assert_eq!(
        iam_request("GET /backups-bucket?versioning HTTP/1.1").0,
        "s3:GetBucketVersioning"
    );
    assert!(!allowed(
        &restore,
        &iam_request("GET /backups-bucket?object-lock HTTP/1.1")
    ));

    let mut env = Env::new();
    env.name = "web-1".into();
    let db = env.add_sqlite("auth.db");
    create_ledger(&db, "WAL", 200);
    env.with_age_key();
    env.extra = "[retention]\nkeep_last = 1\n".into();
    let s3root = env.path("s3");
    let server = S3Server::start(&s3root, &["backups-bucket"]);
    let proxy = FaultProxy::http(server.port);
    env.destinations = vec![dest(
        "s3",
        &format!(
            "s3://backups-bucket/litevault?endpoint={}&region=us-east-1",
            proxy.endpoint()
        ),
    )];
    env.vars = vec![
        ("AWS_ACCESS_KEY_ID".into(), S3_ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), S3_SECRET_KEY.into()),
    ];

    // The backup role: backups (full and, with [incremental], a link) never need more.
    env.incremental = Some("max_chain = 5\n".into());
    let refused = denied(&proxy, &backup, || {
        env.backup();
        let conn = rusqlite::Connection::open(&db).unwrap();
        ledger_step(&conn, 201);
        drop(conn);
        env.backup();
    });
    assert!(
        refused.is_empty(),
        "the backup policy refuses: {refused:#?}"
    );
    // Its check asks for a delete on purpose, to warn when the credential allows one; nothing
    // else it does is refused.
    let refused = denied(&proxy, &backup, || {
        env.run(&["check", "--role", "backup"]);
    });
    assert!(
        refused.iter().all(|l| l.starts_with("DELETE ")),
        "check --role backup asks for more than a delete: {refused:#?}"
    );

    let out = env.path("restored");
    let refused = denied(&proxy, &restore, || {
        env.run(&["list"]).ok();
        env.run(&["show", "latest"]).ok();
        env.run(&["verify", "--all"]).ok();
        env.run(&["restore", "latest", "--to", out.to_str().unwrap()])
            .ok();
        env.run(&["check", "--role", "restore"]).ok();
    });
    assert!(
        refused.is_empty(),
        "the restore policy refuses: {refused:#?}"
    );

    let refused = denied(&proxy, &maintenance, || {
        env.run(&["check", "--role", "maintenance"]).ok();
        env.run(&["prune"]).ok();
    });
    assert!(
        refused.is_empty(),
        "the maintenance policy refuses: {refused:#?}"
    );
    assert!(!proxy.request_log().is_empty());
}
