//! Opening a destination: the OpenDAL operator for its URL (a folder, S3, SFTP, any other
//! service), rooted at this host's namespace, with the layers every operator gets (timeouts
//! before retries, a bandwidth limit; on S3, the request counts), and its trust and cache given
//! at construction. Also the in-memory destination of the unit tests.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use opendal::layers::{RetryLayer, ThrottleLayer, TimeoutLayer};
use opendal::Operator;

use super::destination::{file_root, Destination, Root, Setup};
use super::link::{error_hint, storage_fault, Health, Link, Notify};
use super::runtime;
use super::url::{Location, Sse};
use crate::config;

impl Destination {
    /// Build the operator for `cfg`, rooted at this host's folder (`namespace`) in it.
    pub fn open(
        cfg: &config::DestinationConfig,
        namespace: &str,
        setup: Setup,
    ) -> Result<Destination> {
        let display = cfg.location.display();
        let fail = |e: opendal::Error| {
            let hint = error_hint(&e, &cfg.location);
            anyhow::Error::new(storage_fault(e, hint))
                .context(format!("destination {} ({display}): cannot open", cfg.name))
        };
        let handle = runtime::handle();
        let _guard = handle.enter();
        opendal::install_default();
        let (op, chunk) = match &cfg.location {
            Location::File { root, create } => {
                match file_root(&cfg.name, root, *create)? {
                    Root::Exists => {}
                    Root::ToCreate => std::fs::create_dir_all(root).with_context(|| {
                        format!(
                            "destination {} ({display}): creating its folder {} (create = true)",
                            cfg.name,
                            root.display()
                        )
                    })?,
                }
                // The namespace folder inside an existing root is made on first use.
                let root = root.join(namespace);
                let builder = opendal::services::Fs::default().root(&root.to_string_lossy());
                (Operator::new(builder).map_err(fail)?, None)
            }
            Location::S3(s3) => {
                let builder = s3_builder(s3, namespace)
                    .with_context(|| format!("destination {}", cfg.name))?;
                // Multipart parts of 8 MiB: S3's minimum is 5 MiB, and memory stays bounded.
                let op = Operator::new(builder).map_err(fail)?;
                (super::content_md5::send_with_content_md5(op), Some(8 << 20))
            }
            Location::Sftp(sftp) => {
                let builder = opendal::services::Sftp::default()
                    .endpoint(&format!("ssh://{}:{}", sftp.host, sftp.port))
                    .user(&sftp.user)
                    .key(&sftp.key.to_string_lossy())
                    .root(&format!("{}/{namespace}", sftp.path))
                    .known_hosts_strategy(if sftp.accept_new_host_key {
                        "add"
                    } else {
                        "strict"
                    });
                (Operator::new(builder).map_err(fail)?, None)
            }
            Location::Other { scheme, options } => {
                opendal::init_default_registry();
                let mut options = options.clone();
                let root = options.remove("root").unwrap_or_default();
                options.insert(
                    "root".into(),
                    format!("{}/{namespace}", root.trim_end_matches('/')),
                );
                (Operator::via_iter(scheme, options).map_err(fail)?, None)
            }
        };
        Ok(Destination::assemble(cfg, namespace, op, chunk, setup))
    }

    /// A destination over OpenDAL's `memory` service: the same catalogue, chain, retention and
    /// upkeep code as on a real backend, in milliseconds, for unit tests. Nothing in a config
    /// can name it (a backup kept in memory would be gone when the run ends).
    pub fn in_memory(name: &str, namespace: &str, setup: Setup) -> Destination {
        let handle = runtime::handle();
        let _guard = handle.enter();
        let builder = opendal::services::Memory::default().root(&format!("/{namespace}"));
        let op = Operator::new(builder).expect("the memory service takes any root");
        let cfg = config::DestinationConfig {
            name: name.to_string(),
            location: Location::Other {
                scheme: "memory".into(),
                options: Default::default(),
            },
            retries: 0,
            timeout: Duration::from_secs(10),
            concurrency: 4,
            small_read_concurrency: config::DEFAULT_SMALL_READ_CONCURRENCY,
            parallel_download_threshold: config::DEFAULT_PARALLEL_DOWNLOAD_THRESHOLD,
            bandwidth_limit: None,
            retention: None,
        };
        Destination::assemble(&cfg, namespace, op, None, setup)
    }

    /// The layers every operator gets (timeouts, retries, a bandwidth limit), and the rest.
    fn assemble(
        cfg: &config::DestinationConfig,
        namespace: &str,
        op: Operator,
        chunk: Option<usize>,
        setup: Setup,
    ) -> Destination {
        let display = cfg.location.display();
        let health = Arc::new(Health::default());
        // Counting sits in the HTTP transport, under the retries: each try is a request.
        let op = match &cfg.location {
            Location::S3(_) => op.layer(super::requests::CountLayer(super::requests::counter(
                &cfg.name,
            ))),
            _ => op,
        };
        // Timeout before retry, so a hung request is retried rather than waited on forever;
        // the interceptor sees each timeout, so a destination that stopped answering is given
        // up after two of them instead of after every retry of every request.
        let mut op = op
            .layer(
                TimeoutLayer::new()
                    .with_timeout(cfg.timeout)
                    .with_io_timeout(cfg.timeout),
            )
            .layer(
                RetryLayer::new()
                    .with_max_times(cfg.retries)
                    .with_min_delay(Duration::from_millis(500))
                    .with_max_delay(Duration::from_secs(10))
                    .with_factor(2.0)
                    .with_jitter()
                    .with_notify(Notify(health.clone())),
            );
        if let Some(rate) = cfg.bandwidth_limit {
            let rate = rate.min(u32::MAX as u64) as u32;
            // The burst must hold the largest single write (a multipart part, a pipeline chunk).
            let burst = rate.max(chunk.unwrap_or(0) as u32).max(4 << 20);
            op = op.layer(ThrottleLayer::new(rate, burst));
        }
        let can_rename = op.info().capability().rename;
        Destination {
            name: cfg.name.clone(),
            namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
            link: Link {
                name: cfg.name.clone(),
                display: display.clone(),
                location: cfg.location.clone(),
                timeout: cfg.timeout,
                retries: cfg.retries,
                health,
            },
            display,
            op,
            can_rename,
            chunk,
            concurrency: cfg.concurrency,
            small_read_concurrency: cfg.small_read_concurrency,
            parallel_download_threshold: cfg.parallel_download_threshold,
            sftp: match &cfg.location {
                Location::Sftp(sftp) => Some(super::sftp_session::Side::new(sftp, namespace)),
                _ => None,
            },
            trust: setup.trust,
            cache: setup.cache,
            view: None,
        }
    }

    /// The destination's root, the folder that holds one namespace per host: for reading which
    /// hosts there are (`folders("")`), never for writing.
    pub fn open_root(cfg: &config::DestinationConfig) -> Result<Destination> {
        Destination::open(cfg, "", Setup::default())
    }
}

/// An S3 builder that reads no stray configuration: credentials come only from the standard
/// environment variables or the configured credentials file, and instance metadata is asked
/// only when the config says so.
fn s3_builder(s3: &crate::storage::url::S3, namespace: &str) -> Result<opendal::services::S3> {
    let prefix = if s3.prefix.is_empty() {
        namespace.to_string()
    } else {
        format!("{}/{namespace}", s3.prefix)
    };
    let mut b = opendal::services::S3::default()
        .bucket(&s3.bucket)
        .root(&format!("/{prefix}"))
        .region(s3.region.as_deref().unwrap_or("us-east-1"))
        .disable_config_load();
    if let Some(e) = &s3.endpoint {
        b = b.endpoint(e);
    }
    if s3.virtual_host_style {
        b = b.enable_virtual_host_style();
    }
    if !s3.use_instance_metadata {
        b = b.disable_ec2_metadata();
    }
    let creds = super::credentials::load(s3)?;
    if let Some(c) = creds {
        b = b
            .access_key_id(&c.access_key_id)
            .secret_access_key(&c.secret_access_key);
        if let Some(t) = &c.session_token {
            b = b.session_token(t);
        }
    } else if !s3.use_instance_metadata {
        return Err(anyhow::Error::new(
            crate::exit::config("no S3 credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not set and no credentials_file is configured")
                .hint("export the two variables (cron: in the crontab or a systemd EnvironmentFile), or set credentials_file; set use_instance_metadata = true to use the EC2 instance role"),
        ));
    }
    b = match &s3.sse {
        Sse::None => b,
        Sse::S3 => b.server_side_encryption_with_s3_key(),
        Sse::Kms(None) => b.server_side_encryption_with_aws_managed_kms_key(),
        Sse::Kms(Some(id)) => b.server_side_encryption_with_customer_managed_kms_key(id),
        Sse::Customer(file) => {
            crate::secret_file::refuse_loose_permissions(file, "sse_c_key_file")?;
            let key = std::fs::read(file)
                .with_context(|| format!("reading sse_c_key_file {}", file.display()))?;
            if key.len() != 32 {
                return Err(crate::exit::config(format!(
                    "sse_c_key_file {} must hold exactly 32 bytes (an AES-256 key), not {}",
                    file.display(),
                    key.len()
                ))
                .into());
            }
            b.server_side_encryption_with_customer_key("AES256", &key)
        }
    };
    Ok(b)
}
