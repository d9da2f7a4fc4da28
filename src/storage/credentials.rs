//! S3 credentials: the standard environment variables, or an AWS-style credentials file named in
//! the config. Never the URL, and never printed.

use std::collections::HashMap;

use anyhow::Result;

use super::url::S3;
use crate::exit::config as config_error;

pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// The configured credentials file wins over the environment: it was named on purpose.
pub fn load(s3: &S3) -> Result<Option<Credentials>> {
    if let Some(file) = &s3.credentials_file {
        crate::secret_file::refuse_loose_permissions(file, "credentials_file")?;
        let text = std::fs::read_to_string(file).map_err(|e| {
            config_error(format!(
                "cannot read credentials_file {}: {e}",
                file.display()
            ))
        })?;
        let profile = s3.profile.as_deref().unwrap_or("default");
        let section = ini_section(&text, profile).ok_or_else(|| {
            config_error(format!(
                "credentials_file {} has no [{profile}] section",
                file.display()
            ))
        })?;
        let get = |k: &str| section.get(k).cloned();
        return match (get("aws_access_key_id"), get("aws_secret_access_key")) {
            (Some(id), Some(secret)) => Ok(Some(Credentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: get("aws_session_token"),
            })),
            _ => Err(config_error(format!(
                "credentials_file {} [{profile}] needs aws_access_key_id and aws_secret_access_key",
                file.display()
            ))
            .into()),
        };
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => Ok(Some(Credentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: env("AWS_SESSION_TOKEN"),
        })),
        (Some(_), None) | (None, Some(_)) => Err(config_error(
            "only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set; S3 needs both",
        )
        .into()),
        (None, None) => Ok(None),
    }
}

/// `[name]` (or `[profile name]`) of an INI file, as key -> value.
fn ini_section(text: &str, name: &str) -> Option<HashMap<String, String>> {
    let mut current: Option<String> = None;
    let mut found: Option<HashMap<String, String>> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(head) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let head = head.trim();
            let head = head.strip_prefix("profile ").unwrap_or(head).trim();
            current = Some(head.to_string());
            if head == name && found.is_none() {
                found = Some(HashMap::new());
            }
            continue;
        }
        if current.as_deref() == Some(name) {
            if let (Some(map), Some((k, v))) = (found.as_mut(), line.split_once('=')) {
                map.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_sections() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key=B\n\n[profile backup]\naws_access_key_id=C\n";
        let d = ini_section(text, "default").unwrap();
        assert_eq!(d["aws_access_key_id"], "A");
        assert_eq!(d["aws_secret_access_key"], "B");
        assert_eq!(
            ini_section(text, "backup").unwrap()["aws_access_key_id"],
            "C"
        );
        assert!(ini_section(text, "other").is_none());
    }
}
