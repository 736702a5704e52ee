//! What the controller accepts from objects that tenants write.
//!
//! ClusterPairs, their Secrets, Migrations and annotations may be written by anyone with
//! `edit` rights in their own namespace, while the controller holds cluster-wide Secret read,
//! the chunk store's credentials and its own token. Everything read from them is checked
//! here before it is used (docs/migration.md, "Security model"):
//!
//! - A kubeconfig from a tenant's pair carries inline credentials only: no `exec` plugin, no
//!   `auth-provider`, no file path (`tokenFile`, `client-certificate`, `client-key`,
//!   `certificate-authority`), no `insecure-skip-tls-verify`, no server on a link-local
//!   address (a cloud's metadata service). Pairs in the controller's own namespace are the
//!   admin's and may use all of these.
//! - A pair names a Secret in its own namespace only (the admin's may name any).
//! - A transfer store, whoever names it, is never a folder outside the folders the operator
//!   listed (`--transfer-folder`), never an endpoint on a link-local address, and carries its
//!   own credentials, so nothing falls back to credentials from the controller's environment.
//!   A folder named from a tenant's namespace N lies inside N's own part of an allowed
//!   folder, `<allowed>/N/`, so no tenant reads, overwrites or collects another's store.

use crate::error::{Error, Result};
use ferry_store::{Backend, StoreConfig};
use kube::config::Kubeconfig;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

/// Who wrote an object, as far as the controller can tell from where it lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// In the controller's own namespace: written by whoever administers ferry.
    Admin,
    /// In any other namespace: written by a tenant of that namespace.
    Tenant,
}

/// Where an object that names a transfer store lives, and so what it may name: the
/// namespace of the object that names the store's Secret (a ClusterPair on the source; on
/// the destination, the object holding the import) and the trust that namespace gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin<'a> {
    /// The namespace of the object.
    pub namespace: &'a str,
    /// [`Trust::Admin`] in the controller's namespace, [`Trust::Tenant`] elsewhere.
    pub trust: Trust,
}

impl<'a> Origin<'a> {
    /// An object in `namespace` with `trust`.
    pub fn new(namespace: &'a str, trust: Trust) -> Origin<'a> {
        Origin { namespace, trust }
    }
}

/// The operator's settings that bound what objects may ask for.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Folders a transfer store of backend `fs` may live in (a shared mount). Empty: no
    /// folder transfer stores at all.
    pub transfer_folders: Vec<PathBuf>,
}

impl Policy {
    /// Checks a transfer store's settings, named by an object of `origin`, before anything
    /// opens it. A folder store lies inside an allowed folder; for a tenant's namespace N,
    /// inside N's part of one, `<allowed>/N/`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the setting refused and why.
    pub fn check_transfer(&self, what: &str, c: &StoreConfig, origin: Origin<'_>) -> Result<()> {
        let refuse = |why: String| Err(Error::Invalid(format!("{what}: {why}")));
        if let Some(e) = &c.endpoint
            && let Some(host) = url_host(e)
            && is_link_local(&host)
        {
            return refuse(format!(
                "endpoint {e} is a link-local address (a metadata service); name the object \
                 store's own address"
            ));
        }
        match c.backend {
            Backend::Fs => {
                let root = c.root.as_deref().unwrap_or_default();
                let part = match origin.trust {
                    Trust::Admin => None,
                    Trust::Tenant => Some(origin.namespace),
                };
                if !self.folder_allowed(Path::new(root), part) {
                    return refuse(self.folder_refusal(root, part));
                }
            }
            Backend::Memory => {}
            Backend::S3 => {
                let keys = c.access_key_id.is_some() && c.secret_access_key.is_some();
                if !keys && !c.anonymous {
                    return refuse(
                        "s3 needs accessKeyId and secretAccessKey (or anonymous: \"true\"): \
                         credentials are never taken from the controller's environment"
                            .into(),
                    );
                }
            }
            Backend::Azblob => {
                if c.account_name.is_none() || c.account_key.is_none() {
                    return refuse(
                        "azblob needs accountName and accountKey: credentials are never taken \
                         from the controller's environment"
                            .into(),
                    );
                }
            }
            Backend::Gcs => {
                if c.credential.is_none() && !c.anonymous {
                    return refuse(
                        "gcs needs credential (service-account JSON, base64) or anonymous: \
                         \"true\": credentials are never taken from the controller's environment"
                            .into(),
                    );
                }
            }
        }
        Ok(())
    }

    /// True when `root` is an absolute path, without `..`, inside one of the allowed folders
    /// and, for a tenant's namespace `part`, inside (or at) `<allowed>/<part>`.
    fn folder_allowed(&self, root: &Path, part: Option<&str>) -> bool {
        if !root.is_absolute() || root.components().any(|c| c == Component::ParentDir) {
            return false;
        }
        if let Some(ns) = part
            && !is_path_segment(ns)
        {
            return false;
        }
        // A link inside an allowed folder could lead out of it: compare real paths.
        let real = real_path(root);
        self.transfer_folders.iter().any(|allowed| {
            let a = real_path(allowed);
            match part {
                None => real.starts_with(&a) && real != a,
                Some(ns) => real.starts_with(real_path(&allowed.join(ns))),
            }
        })
    }

    /// Why folder `root` is refused, with the folders that would do.
    fn folder_refusal(&self, root: &str, part: Option<&str>) -> String {
        if self.transfer_folders.is_empty() {
            return format!(
                "a folder transfer store ({root}) is not allowed here: use s3, azblob or gcs, or \
                 have the operator list the shared folder with --transfer-folder"
            );
        }
        let allowed: Vec<String> = self
            .transfer_folders
            .iter()
            .map(|p| match part {
                Some(ns) => format!("{}/", p.join(ns).display()),
                None => format!("{}/", p.display()),
            })
            .collect();
        match part {
            Some(ns) => format!(
                "folder {root} is not inside a transfer folder's part for namespace {ns}: a \
                 ClusterPair or import in namespace {ns} may use only a folder inside \
                 <allowed>/{ns}/ ({}), so no namespace reaches another's store",
                allowed.join(", ")
            ),
            None => format!(
                "folder {root} is not inside a transfer folder this controller allows ({}); \
                 use a folder under one of them",
                allowed.join(", ")
            ),
        }
    }
}

/// A namespace usable as one folder name: not empty, no separator, not `.` or `..`.
fn is_path_segment(ns: &str) -> bool {
    !ns.is_empty() && ns != "." && ns != ".." && !ns.contains(['/', '\\', '\0'])
}

/// `p` with its deepest existing ancestor resolved (links followed) and the rest appended.
fn real_path(p: &Path) -> PathBuf {
    let mut tail = Vec::new();
    let mut at = p.to_path_buf();
    loop {
        if let Ok(r) = std::fs::canonicalize(&at) {
            return tail.iter().rev().fold(r, |acc: PathBuf, c| acc.join(c));
        }
        match (at.file_name().map(|n| n.to_os_string()), at.parent()) {
            (Some(name), Some(parent)) => {
                tail.push(name);
                at = parent.to_path_buf();
            }
            _ => return p.to_path_buf(),
        }
    }
}

/// Checks a destination kubeconfig before any client is built from it.
///
/// # Errors
/// [`Error::Invalid`] naming the refused field, the user or cluster it sits in, and what to
/// use instead.
pub fn check_kubeconfig(what: &str, kc: &Kubeconfig, trust: Trust) -> Result<()> {
    if trust == Trust::Admin {
        return Ok(());
    }
    let refuse = |field: &str, whose: String, instead: &str| {
        Err(Error::Invalid(format!(
            "{what}: kubeconfig {whose} sets {field}, which a ClusterPair outside the \
             controller's namespace may not use: {instead}"
        )))
    };
    for u in &kc.auth_infos {
        let Some(a) = &u.auth_info else { continue };
        let whose = format!("user {:?}", u.name);
        if a.exec.is_some() {
            return refuse(
                "exec (a credential plugin the controller would run)",
                whose,
                "put a token or client certificate data inline (ferryctl generate clusterpair \
                 does)",
            );
        }
        if a.auth_provider.is_some() {
            return refuse(
                "auth-provider",
                whose,
                "put a token or client certificate data inline",
            );
        }
        for (field, set, instead) in [
            ("tokenFile", a.token_file.is_some(), "use token"),
            (
                "client-certificate (a file path)",
                a.client_certificate.is_some(),
                "use client-certificate-data",
            ),
            (
                "client-key (a file path)",
                a.client_key.is_some(),
                "use client-key-data",
            ),
        ] {
            if set {
                return refuse(field, whose, instead);
            }
        }
    }
    for c in &kc.clusters {
        let Some(cl) = &c.cluster else { continue };
        let whose = format!("cluster {:?}", c.name);
        if cl.certificate_authority.is_some() {
            return refuse(
                "certificate-authority (a file path)",
                whose,
                "use certificate-authority-data",
            );
        }
        if cl.insecure_skip_tls_verify == Some(true) {
            return refuse(
                "insecure-skip-tls-verify",
                whose,
                "give the server's CA as certificate-authority-data",
            );
        }
        if let Some(s) = &cl.server
            && let Some(host) = url_host(s)
            && is_link_local(&host)
        {
            return refuse(
                "a server on a link-local address (a metadata service)",
                whose,
                "name the destination API server's address",
            );
        }
    }
    Ok(())
}

/// The host of a URL (`scheme://host[:port]/...`), brackets removed for IPv6.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    Some(host.to_ascii_lowercase())
}

/// Link-local addresses (169.254.0.0/16, fe80::/10) and the names clouds give their metadata
/// services.
fn is_link_local(host: &str) -> bool {
    if matches!(host, "metadata.google.internal" | "metadata") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => a.is_link_local(),
        Ok(IpAddr::V6(a)) => {
            (a.segments()[0] & 0xffc0) == 0xfe80
                || a.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
                // AWS's IPv6 metadata address.
                || a.segments()[..4] == [0xfd00, 0x0ec2, 0, 0]
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: Origin<'static> = Origin {
        namespace: "ferry-system",
        trust: Trust::Admin,
    };

    fn kc(yaml: &str) -> Kubeconfig {
        Kubeconfig::from_yaml(yaml).expect("kubeconfig")
    }

    #[test]
    fn hosts_are_read_from_urls() {
        assert_eq!(
            url_host("https://169.254.169.254:443/x").as_deref(),
            Some("169.254.169.254")
        );
        assert_eq!(url_host("http://[fe80::1]:80").as_deref(), Some("fe80::1"));
        assert_eq!(
            url_host("http://u:p@Host.example").as_deref(),
            Some("host.example")
        );
        assert!(is_link_local("169.254.169.254"));
        assert!(is_link_local("fd00:ec2::254"));
        assert!(!is_link_local("127.0.0.1"));
        assert!(!is_link_local("s3.example.com"));
    }

    #[test]
    fn tenant_kubeconfigs_carry_inline_credentials_only() {
        let inline = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://10.0.0.1\n    certificate-authority-data: QUJD\nusers:\n- name: u\n  user:\n    token: abc\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n";
        check_kubeconfig("pair", &kc(inline), Trust::Tenant).expect("inline is fine");
        let cases = [
            (
                "exec",
                "users:\n- name: u\n  user:\n    exec: {apiVersion: client.authentication.k8s.io/v1, command: touch, args: [/tmp/x]}\n",
            ),
            (
                "auth-provider",
                "users:\n- name: u\n  user:\n    auth-provider: {name: gcp, config: {cmd-path: /bin/sh}}\n",
            ),
            (
                "tokenFile",
                "users:\n- name: u\n  user:\n    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token\n",
            ),
            (
                "client-certificate",
                "users:\n- name: u\n  user:\n    client-certificate: /etc/cert.pem\n",
            ),
            (
                "client-key",
                "users:\n- name: u\n  user:\n    client-key: /etc/key.pem\n",
            ),
            (
                "certificate-authority",
                "clusters:\n- name: c\n  cluster:\n    server: https://x\n    certificate-authority: /etc/ca.pem\n",
            ),
            (
                "insecure-skip-tls-verify",
                "clusters:\n- name: c\n  cluster:\n    server: https://x\n    insecure-skip-tls-verify: true\n",
            ),
            (
                "link-local",
                "clusters:\n- name: c\n  cluster:\n    server: http://169.254.169.254\n",
            ),
        ];
        for (field, body) in cases {
            let k = kc(&format!("apiVersion: v1\nkind: Config\n{body}"));
            let e = check_kubeconfig("pair", &k, Trust::Tenant).expect_err(field);
            assert!(e.to_string().contains(field), "{field}: {e}");
            check_kubeconfig("pair", &k, Trust::Admin).expect("the admin's pair may");
        }
    }

    #[test]
    fn transfer_stores_stay_inside_what_the_operator_allows() {
        let dir = tempfile::tempdir().expect("tmp");
        let inside = dir.path().join("moves");
        let p = Policy {
            transfer_folders: vec![dir.path().to_path_buf()],
        };
        p.check_transfer("s", &StoreConfig::fs(inside.to_string_lossy()), ADMIN)
            .expect("inside");
        for root in [
            "/etc".to_string(),
            "relative/dir".to_string(),
            format!("{}/../escape", dir.path().display()),
            dir.path().display().to_string(),
        ] {
            let e = p
                .check_transfer("s", &StoreConfig::fs(root.clone()), ADMIN)
                .expect_err(&root);
            assert!(e.to_string().contains("folder"), "{e}");
        }
        let none = Policy::default();
        assert!(
            none.check_transfer("s", &StoreConfig::fs(inside.to_string_lossy()), ADMIN)
                .is_err()
        );
        let mut s3 = StoreConfig {
            backend: Backend::S3,
            bucket: Some("b".into()),
            endpoint: Some("http://169.254.169.254/latest/meta-data/".into()),
            access_key_id: Some("a".into()),
            secret_access_key: Some("b".into()),
            ..Default::default()
        };
        let e = p.check_transfer("s", &s3, ADMIN).expect_err("metadata");
        assert!(e.to_string().contains("link-local"), "{e}");
        s3.endpoint = Some("http://127.0.0.1:9000".into());
        p.check_transfer("s", &s3, ADMIN)
            .expect("loopback is an address like any");
        s3.access_key_id = None;
        let e = p.check_transfer("s", &s3, ADMIN).expect_err("no keys");
        assert!(e.to_string().contains("environment"), "{e}");
    }

    #[test]
    fn a_tenant_folder_lies_in_its_namespaces_part() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = Policy {
            transfer_folders: vec![dir.path().to_path_buf()],
        };
        let a = Origin::new("team-a", Trust::Tenant);
        let fs = |rel: &str| StoreConfig::fs(dir.path().join(rel).to_string_lossy());
        for ok in ["team-a", "team-a/store", "team-a/x/y"] {
            p.check_transfer("s", &fs(ok), a).expect(ok);
        }
        for (bad, why) in [
            ("team-b/store", "<allowed>/team-a/"),
            ("store", "<allowed>/team-a/"),
            ("team-a-b/store", "<allowed>/team-a/"),
            ("team-a/../team-b", "<allowed>/team-a/"),
        ] {
            let e = p.check_transfer("s", &fs(bad), a).expect_err(bad);
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
        // A link in a tenant's part that leads to another's is followed, and refused.
        std::fs::create_dir_all(dir.path().join("team-b/store")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("team-a")).expect("mkdir");
        std::os::unix::fs::symlink(dir.path().join("team-b"), dir.path().join("team-a/b"))
            .expect("link");
        assert!(p.check_transfer("s", &fs("team-a/b/store"), a).is_err());
        // A namespace that is no folder name reaches nothing.
        for ns in ["", ".", ".."] {
            let o = Origin::new(ns, Trust::Tenant);
            assert!(
                p.check_transfer("s", &fs("team-a/store"), o).is_err(),
                "{ns:?}"
            );
        }
        // The admin's pairs may use any allowed folder.
        p.check_transfer("s", &fs("team-b/store"), ADMIN)
            .expect("the admin's pair");
    }
}
