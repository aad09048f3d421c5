//! The ACL file in Secret `<name>-redis-acl` and the live ACL commands of a
//! credential rotation.
//!
//! Two users: `default`, the application credential from the connection
//! Secret, and `replication`, used by replicas (`masteruser`), by Sentinel
//! (`sentinel auth-user`) and by the probes. Rotation keeps two passwords on
//! `default` for the grace period, so clients never see a restart.

use std::fmt;

/// User the replicas, the Sentinels and the probes authenticate as.
pub const REPLICATION_USER: &str = "replication";
/// Key of the ACL file in the ACL Secret.
pub const ACL_FILE_KEY: &str = "users.acl";
/// Key of the `masterauth` include in the ACL Secret.
pub const MASTERAUTH_KEY: &str = "masterauth.conf";
/// Key of the Sentinel auth fragment in the ACL Secret.
pub const SENTINEL_AUTH_KEY: &str = "sentinel-auth.conf";
/// Key of the bare replication password (env var of the probes and scripts).
pub const REPLICATION_PASSWORD_KEY: &str = "replication-password";

/// Commands a replica needs on its primary: the handshake, the stream, keepalive.
const REPLICA_COMMANDS: &str = "+psync +replconf +ping";
/// What Sentinel sends to the data nodes, per the Redis Sentinel ACL guide:
/// health and role checks, the `__sentinel__:hello` channel, the failover
/// transaction (MULTI/SLAVEOF/CONFIG REWRITE/CLIENT KILL/EXEC), `SCRIPT KILL`
/// for a busy primary; `+failover` is required by Valkey 9 Sentinel, and
/// `+replicaof` is the modern name of SLAVEOF. No key pattern: the user
/// cannot read or write data.
const SENTINEL_COMMANDS: &str = "+multi +exec +slaveof +replicaof +ping +info +role +subscribe \
+publish +config|rewrite +client|setname +client|kill +script|kill +failover";

/// A password; `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password. It must not contain whitespace (the ACL file and
    /// config format split on it); the operator generates alphanumerics.
    pub fn new(value: impl Into<String>) -> Result<Self, AclError> {
        let value = value.into();
        if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(AclError::BadPassword);
        }
        Ok(Self(value))
    }
    /// The value, for the Secret and the server only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Errors building ACL content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AclError {
    /// Empty, or contains whitespace/control characters.
    #[error("a password must be non-empty and contain no whitespace or control characters")]
    BadPassword,
    /// `default` needs at least one password.
    #[error("user default needs at least one password")]
    NoPassword,
}

/// The credentials in the ACL file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclUsers {
    /// Passwords of `default`: one, or two during a rotation (old, new).
    pub default: Vec<Password>,
    /// Password of [`REPLICATION_USER`].
    pub replication: Password,
}

/// The ACL file (`aclfile`): one `user` line per user.
pub fn render_acl_file(users: &AclUsers) -> Result<String, AclError> {
    if users.default.is_empty() {
        return Err(AclError::NoPassword);
    }
    let mut default = String::from("user default on");
    for p in &users.default {
        default.push_str(" >");
        default.push_str(p.expose());
    }
    default.push_str(" ~* &* +@all");
    Ok(format!(
        "{default}\nuser {REPLICATION_USER} on >{} resetchannels &__sentinel__:* -@all {REPLICA_COMMANDS} {SENTINEL_COMMANDS}\n",
        users.replication.expose()
    ))
}

/// The users of an ACL file written by [`render_acl_file`]: the passwords
/// of `default` and of the replication user. `None` when either is missing.
pub fn parse_acl_file(text: &str) -> Option<AclUsers> {
    let passwords = |user: &str| -> Vec<Password> {
        text.lines()
            .filter_map(|l| l.strip_prefix("user "))
            .filter_map(|l| l.split_once(' '))
            .filter(|(u, _)| *u == user)
            .flat_map(|(_, rest)| rest.split_whitespace())
            .filter_map(|t| t.strip_prefix('>'))
            .filter_map(|p| Password::new(p).ok())
            .collect()
    };
    let default = passwords("default");
    let replication = passwords(REPLICATION_USER).into_iter().next()?;
    (!default.is_empty()).then_some(AclUsers {
        default,
        replication,
    })
}

/// The file `include`d by the server config: how a replica authenticates to
/// its primary. Kept out of the ConfigMap because it holds a password.
pub fn render_masterauth(replication: &Password) -> String {
    format!("masterauth {}\n", replication.expose())
}

/// Appended to the Sentinel config at startup (Sentinel rewrites its config,
/// so it cannot live in a read-only ConfigMap): how Sentinel authenticates to
/// the data nodes and to its peers, and the only user allowed on Sentinel.
pub fn render_sentinel_auth(master_set: &str, replication: &Password) -> String {
    let pw = replication.expose();
    format!(
        "sentinel auth-pass {master_set} {pw}\n\
         sentinel sentinel-pass {pw}\n\
         user default off\n\
         user {REPLICATION_USER} on >{pw} ~* &* +@all\n"
    )
}

/// One ACL command to send live to every data pod (ACLs are not replicated).
#[derive(Clone, PartialEq, Eq)]
pub struct AclCommand {
    args: Vec<String>,
}

impl AclCommand {
    /// The command's words, `ACL` first; includes a password.
    pub fn args(&self) -> &[String] {
        &self.args
    }
}

impl fmt::Debug for AclCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keep the shape, hide the password: `>pw` / `<pw` become `>…` / `<…`.
        let shown: Vec<String> = self
            .args
            .iter()
            .map(|a| match a.chars().next() {
                Some(c @ ('>' | '<')) => format!("{c}<redacted>"),
                _ => a.clone(),
            })
            .collect();
        write!(f, "AclCommand({})", shown.join(" "))
    }
}

/// A step of the dual-password rotation of `default`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationStep {
    /// Add the new password; old and new both work (grace period starts).
    AddNew,
    /// Remove the old password; only the new one works.
    RemoveOld,
}

/// What one rotation step does: commands to send live, then the ACL file to
/// store so a restarted pod comes back with the same users.
#[derive(Clone, PartialEq, Eq)]
pub struct RotationPlan {
    /// Send to every data pod, primary and replicas.
    pub live_commands: Vec<AclCommand>,
    /// Content of [`ACL_FILE_KEY`] after the step.
    pub acl_file: String,
}

impl fmt::Debug for RotationPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotationPlan")
            .field("live_commands", &self.live_commands)
            .field("acl_file", &"<redacted>")
            .finish()
    }
}

/// The commands and file of `step` when rotating `default` from `old` to `new`.
///
/// Order matters: for `AddNew` the connection Secret gets the new password only
/// after the commands succeeded on every pod; for `RemoveOld` the commands are
/// sent only after the grace period, when clients have reloaded the Secret.
pub fn rotation_step(
    old: &Password,
    new: &Password,
    replication: &Password,
    step: RotationStep,
) -> Result<RotationPlan, AclError> {
    let (arg, default) = match step {
        RotationStep::AddNew => (format!(">{}", new.expose()), vec![old.clone(), new.clone()]),
        RotationStep::RemoveOld => (format!("<{}", old.expose()), vec![new.clone()]),
    };
    let acl_file = render_acl_file(&AclUsers {
        default,
        replication: replication.clone(),
    })?;
    Ok(RotationPlan {
        live_commands: vec![AclCommand {
            args: vec!["ACL".into(), "SETUSER".into(), "default".into(), arg],
        }],
        acl_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Password {
        Password::new(s).expect("valid password")
    }

    #[test]
    fn acl_file_has_default_and_a_restricted_replication_user() {
        let file = render_acl_file(&AclUsers {
            default: vec![pw("appPW")],
            replication: pw("replPW"),
        })
        .expect("renders");
        let lines: Vec<&str> = file.lines().collect();
        assert_eq!(lines[0], "user default on >appPW ~* &* +@all");
        let repl: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(&repl[..4], ["user", "replication", "on", ">replPW"]);
        for needed in [
            "+psync",
            "+replconf",
            "+ping",
            "+info",
            "+role",
            "+slaveof",
            "+subscribe",
            "+publish",
            "+config|rewrite",
            "+client|kill",
            "-@all",
        ] {
            assert!(repl.contains(&needed), "replication user lacks {needed}");
        }
        assert!(
            !repl.iter().any(|w| w.starts_with('~')),
            "no key access for replication"
        );
    }

    #[test]
    fn acl_files_parse_back() {
        let users = AclUsers {
            default: vec![pw("old"), pw("new")],
            replication: pw("rep"),
        };
        let text = render_acl_file(&users).expect("renders");
        assert_eq!(parse_acl_file(&text), Some(users));
        assert_eq!(parse_acl_file("user default on >x ~* +@all\n"), None);
    }

    #[test]
    fn rotation_adds_then_removes() {
        let (old, new, r) = (pw("OLD"), pw("NEW"), pw("R"));
        let add = rotation_step(&old, &new, &r, RotationStep::AddNew).expect("add");
        assert_eq!(
            add.live_commands[0].args(),
            ["ACL", "SETUSER", "default", ">NEW"]
        );
        assert!(add
            .acl_file
            .starts_with("user default on >OLD >NEW ~* &* +@all\n"));
        let remove = rotation_step(&old, &new, &r, RotationStep::RemoveOld).expect("remove");
        assert_eq!(
            remove.live_commands[0].args(),
            ["ACL", "SETUSER", "default", "<OLD"]
        );
        assert!(remove
            .acl_file
            .starts_with("user default on >NEW ~* &* +@all\n"));
    }

    #[test]
    fn passwords_never_in_debug() {
        let (old, new, r) = (pw("OLDsecret"), pw("NEWsecret"), pw("Rsecret"));
        let plan = rotation_step(&old, &new, &r, RotationStep::AddNew).expect("add");
        let users = AclUsers {
            default: vec![old.clone()],
            replication: r,
        };
        let shown = format!("{plan:?} {users:?} {new:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("SETUSER default ><redacted>"));
    }

    #[test]
    fn bad_passwords_are_refused() {
        assert_eq!(Password::new(""), Err(AclError::BadPassword));
        assert_eq!(Password::new("a b"), Err(AclError::BadPassword));
        assert_eq!(Password::new("a\nuser x on"), Err(AclError::BadPassword));
        let empty = AclUsers {
            default: vec![],
            replication: pw("r"),
        };
        assert_eq!(render_acl_file(&empty), Err(AclError::NoPassword));
    }
}
