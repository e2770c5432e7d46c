//! `[ha]`: active/standby leadership on etcd or Kubernetes (issue 12). In:
//! the raw table with its spans. Out: `HaSettings`, or a `ConfigError` that
//! names the file, line, column and key. Without `[ha]` nothing changes.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::error::{ConfigError, Source};
use super::raw::RawHa;
use super::settings::{duration, http_url};

/// Which coordination engine holds the lease and the shared state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HaBackend {
    /// `endpoints` are `http://host:port` URLs; keys live under `election`.
    Etcd {
        endpoints: Vec<String>,
        election: String,
    },
    /// A `coordination.k8s.io/v1` Lease; `namespace` `None` means the pod's own.
    Kubernetes {
        lease_name: String,
        namespace: Option<String>,
    },
}

/// The validated `[ha]` table. `renew_deadline < lease` and `retry <
/// renew_deadline` hold, so a leader steps down before its lease can pass on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaSettings {
    pub backend: HaBackend,
    /// How long a lease outlives its holder's last renewal.
    pub lease: Duration,
    /// A leader that has not renewed for this long stops polling.
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby tries to take over.
    pub retry: Duration,
    /// Names this instance in the lease and in `ha.*` events.
    pub identity: String,
}

// client-go's leader-election defaults.
const DEFAULT_LEASE: Duration = Duration::from_secs(15);
const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
const DEFAULT_RETRY: Duration = Duration::from_secs(2);

pub(super) fn ha_settings(
    src: &Source<'_>,
    table: &Spanned<RawHa>,
) -> Result<HaSettings, ConfigError> {
    let raw = table.get_ref();
    let lease = duration(src, &raw.lease, "ha.lease", DEFAULT_LEASE)?;
    let renew_deadline = duration(
        src,
        &raw.renew_deadline,
        "ha.renew_deadline",
        DEFAULT_RENEW_DEADLINE,
    )?;
    let retry = duration(src, &raw.retry, "ha.retry", DEFAULT_RETRY)?;
    if lease.as_millis() % 1000 != 0 {
        // etcd leases are whole seconds.
        return Err(src.invalid(span(&raw.lease, table), "ha.lease", "must be whole seconds"));
    }
    if renew_deadline >= lease {
        return Err(src.invalid(
            span(&raw.renew_deadline, table),
            "ha.renew_deadline",
            "must be shorter than ha.lease",
        ));
    }
    if retry >= renew_deadline {
        return Err(src.invalid(
            span(&raw.retry, table),
            "ha.retry",
            "must be shorter than ha.renew_deadline",
        ));
    }
    let identity = match &raw.identity {
        Some(id) if id.get_ref().trim().is_empty() => {
            return Err(src.invalid(id.span(), "ha.identity", "must not be empty"));
        }
        Some(id) => id.get_ref().clone(),
        None => default_identity(),
    };
    let backend = match raw.backend.as_ref() {
        None => {
            return Err(src.invalid(
                table.span(),
                "ha.backend",
                "missing: set \"etcd\" or \"kubernetes\"",
            ));
        }
        Some(b) => match b.get_ref().as_str() {
            "etcd" => {
                built_with(src, b, "etcd", cfg!(feature = "etcd"))?;
                etcd(src, raw, table)?
            }
            "kubernetes" => {
                built_with(src, b, "kubernetes", cfg!(feature = "kubernetes"))?;
                kubernetes(src, raw)?
            }
            other => {
                return Err(src.invalid(
                    b.span(),
                    "ha.backend",
                    format!("must be etcd or kubernetes, not {other:?}"),
                ));
            }
        },
    };
    Ok(HaSettings {
        backend,
        lease,
        renew_deadline,
        retry,
        identity,
    })
}

/// Refuses a backend whose engine this binary was built without: the
/// engines are cargo features (see Cargo.toml), and a config must say so at
/// its own line rather than fail when the standby first campaigns.
fn built_with(
    src: &Source<'_>,
    backend: &Spanned<String>,
    feature: &str,
    built: bool,
) -> Result<(), ConfigError> {
    if built {
        return Ok(());
    }
    Err(src.invalid(
        backend.span(),
        "ha.backend",
        format!("built without the `{feature}` feature (cargo build --features {feature})"),
    ))
}

fn etcd(src: &Source<'_>, raw: &RawHa, table: &Spanned<RawHa>) -> Result<HaBackend, ConfigError> {
    for (value, key) in [
        (&raw.lease_name, "ha.lease_name"),
        (&raw.namespace, "ha.namespace"),
    ] {
        if let Some(value) = value {
            return Err(src.invalid(
                value.span(),
                key,
                "applies to backend = \"kubernetes\" only",
            ));
        }
    }
    let Some(endpoints) = &raw.endpoints else {
        return Err(src.invalid(
            table.span(),
            "ha.endpoints",
            "missing: the etcd client URLs",
        ));
    };
    if endpoints.get_ref().is_empty() {
        return Err(src.invalid(endpoints.span(), "ha.endpoints", "must not be empty"));
    }
    for url in endpoints.get_ref() {
        http_url(src, url, "ha.endpoints")?;
    }
    let election = match &raw.election {
        None => "flowwatch".to_string(),
        Some(e) if e.get_ref().trim_matches('/').is_empty() => {
            return Err(src.invalid(e.span(), "ha.election", "must not be empty"));
        }
        Some(e) => e.get_ref().trim_end_matches('/').to_string(),
    };
    Ok(HaBackend::Etcd {
        endpoints: endpoints
            .get_ref()
            .iter()
            .map(|u| u.get_ref().clone())
            .collect(),
        election,
    })
}

fn kubernetes(src: &Source<'_>, raw: &RawHa) -> Result<HaBackend, ConfigError> {
    if let Some(value) = &raw.endpoints {
        return Err(src.invalid(
            value.span(),
            "ha.endpoints",
            "applies to backend = \"etcd\" only",
        ));
    }
    if let Some(value) = &raw.election {
        return Err(src.invalid(
            value.span(),
            "ha.election",
            "applies to backend = \"etcd\" only",
        ));
    }
    let lease_name = match &raw.lease_name {
        None => "flowwatch".to_string(),
        Some(n) if !is_dns_label(n.get_ref()) => {
            return Err(src.invalid(
                n.span(),
                "ha.lease_name",
                "must be a DNS subdomain name (lowercase letters, digits, '-' and '.')",
            ));
        }
        Some(n) => n.get_ref().clone(),
    };
    let namespace = match &raw.namespace {
        None => None,
        Some(n) if !is_dns_label(n.get_ref()) => {
            return Err(src.invalid(n.span(), "ha.namespace", "must be a DNS label"));
        }
        Some(n) => Some(n.get_ref().clone()),
    };
    Ok(HaBackend::Kubernetes {
        lease_name,
        namespace,
    })
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.'])
}

/// Where an error about a key goes: the key's value, else the table.
fn span(value: &Option<Spanned<String>>, table: &Spanned<RawHa>) -> Range<usize> {
    value.as_ref().map_or_else(|| table.span(), Spanned::span)
}

/// `hostname:pid`, as client-go does, so two instances on one host differ.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "flowwatch".to_string());
    format!("{host}:{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse_str;

    const WATCH: &str = "[[watch]]\nexecution_arn = \"arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-0001\"\n";

    fn load(ha: &str) -> Result<crate::config::Config, ConfigError> {
        parse_str(
            &format!("{ha}\n{WATCH}"),
            Path::new("/etc/flowwatch/f.toml"),
        )
    }

    #[test]
    fn a_backend_this_binary_lacks_is_refused_at_its_line() {
        #[derive(serde::Deserialize)]
        struct Table {
            backend: Spanned<String>,
        }
        let text = "[ha]\nbackend = \"etcd\"\n";
        let table: std::collections::BTreeMap<String, Table> = toml::from_str(text).unwrap();
        let src = Source {
            path: Path::new("/etc/flowwatch/f.toml"),
            text,
        };
        let backend = &table["ha"].backend;
        assert!(built_with(&src, backend, "etcd", true).is_ok());
        let err = built_with(&src, backend, "etcd", false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("f.toml:2:11: ha.backend: built without the `etcd` feature"),
            "{err}"
        );
    }

    #[test]
    #[cfg(not(all(feature = "etcd", feature = "kubernetes")))]
    fn a_lean_build_refuses_the_engine_it_lacks_when_loading() {
        let backend = if cfg!(feature = "etcd") {
            "kubernetes"
        } else {
            "etcd"
        };
        let err = load(&format!(
            "[ha]\nbackend = \"{backend}\"\nendpoints = [\"http://e:2379\"]"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&format!(
                "2:11: ha.backend: built without the `{backend}` feature"
            )),
            "{err}"
        );
    }

    #[test]
    fn without_ha_nothing_changes() {
        assert_eq!(load("").unwrap().ha, None);
    }

    #[test]
    #[cfg_attr(not(feature = "etcd"), ignore = "built without the `etcd` feature")]
    fn an_etcd_table_takes_client_go_defaults() {
        let ha = load(
            "[ha]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nidentity = \"a\"",
        )
        .unwrap()
        .ha
        .unwrap();
        assert_eq!(
            ha,
            HaSettings {
                backend: HaBackend::Etcd {
                    endpoints: vec!["http://127.0.0.1:2379".into()],
                    election: "flowwatch".into(),
                },
                lease: Duration::from_secs(15),
                renew_deadline: Duration::from_secs(10),
                retry: Duration::from_secs(2),
                identity: "a".into(),
            }
        );
    }

    #[test]
    #[cfg_attr(
        not(feature = "kubernetes"),
        ignore = "built without the `kubernetes` feature"
    )]
    fn the_default_identity_is_host_and_pid() {
        let ha = load("[ha]\nbackend = \"kubernetes\"").unwrap().ha.unwrap();
        assert!(
            ha.identity.ends_with(&format!(":{}", std::process::id())),
            "{}",
            ha.identity
        );
        assert_eq!(
            ha.backend,
            HaBackend::Kubernetes {
                lease_name: "flowwatch".into(),
                namespace: None
            }
        );
    }

    #[test]
    fn a_renew_deadline_not_below_the_lease_is_refused_where_written() {
        let err = load("[ha]\nbackend = \"etcd\"\nendpoints = [\"http://e:2379\"]\nlease = \"5s\"\nrenew_deadline = \"5s\"")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "/etc/flowwatch/f.toml:5:18: ha.renew_deadline: must be shorter than ha.lease"
        );
    }

    #[test]
    fn an_unknown_backend_or_key_is_refused() {
        let err = load("[ha]\nbackend = \"zookeeper\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2:11: ha.backend: must be etcd or kubernetes"),
            "{err}"
        );
        let err = load("[ha]\nbackend = \"etcd\"\nendpoint = [\"x\"]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ha.endpoint"), "{err}");
    }

    #[test]
    #[cfg_attr(not(feature = "etcd"), ignore = "built without the `etcd` feature")]
    fn etcd_needs_endpoints_and_refuses_kubernetes_keys() {
        let err = load("[ha]\nbackend = \"etcd\"").unwrap_err().to_string();
        assert!(err.contains("ha.endpoints: missing"), "{err}");
        let err =
            load("[ha]\nbackend = \"etcd\"\nendpoints = [\"http://e:2379\"]\nnamespace = \"x\"")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("4:13: ha.namespace: applies to backend"),
            "{err}"
        );
    }
}
