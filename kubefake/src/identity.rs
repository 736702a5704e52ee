//! Who a request comes from, as the real API server's authenticators would tell it: a user
//! name and groups. A service account's token authenticates as
//! `system:serviceaccount:<namespace>:<name>` in groups `system:serviceaccounts`,
//! `system:serviceaccounts:<namespace>` and `system:authenticated`.

/// An authenticated identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    /// The user name.
    pub user: String,
    /// The groups.
    pub groups: Vec<String>,
}

/// The group whose members bypass authorization on the real server.
pub const MASTERS: &str = "system:masters";

impl Identity {
    /// A cluster administrator (group `system:masters`): every request is allowed, as the
    /// real server's superuser authorizer does.
    pub fn admin() -> Identity {
        Identity {
            user: "kubernetes-admin".into(),
            groups: vec![MASTERS.into(), "system:authenticated".into()],
        }
    }

    /// A user with no group but `system:authenticated`.
    pub fn user(name: &str) -> Identity {
        Identity {
            user: name.into(),
            groups: vec!["system:authenticated".into()],
        }
    }

    /// The service account `ns/name`.
    pub fn service_account(ns: &str, name: &str) -> Identity {
        Identity {
            user: format!("system:serviceaccount:{ns}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
        }
    }

    /// A request with no credentials.
    pub fn anonymous() -> Identity {
        Identity {
            user: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        }
    }

    /// True for members of `system:masters`.
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == MASTERS)
    }

    /// `(namespace, name)` when this is a service account.
    pub fn service_account_of(&self) -> Option<(&str, &str)> {
        let rest = self.user.strip_prefix("system:serviceaccount:")?;
        rest.split_once(':')
    }

    /// The token a kubeconfig for this identity carries over HTTP.
    pub fn token(&self) -> String {
        let mut t = String::from("fake-");
        for b in self.user.bytes() {
            if b.is_ascii_alphanumeric() {
                t.push(b as char);
            } else {
                t.push_str(&format!("_{b:02x}"));
            }
        }
        t
    }
}
