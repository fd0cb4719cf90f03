//! Bearer tokens: the agent and approver tokens from the environment and the tokens file,
//! kept as SHA-256 digests and compared in constant time.

use super::*;

/// One configured token: the SHA-256 of its value and whom it identifies.
#[derive(Debug, Clone)]
pub(super) struct TokenEntry {
    sha256: [u8; 32],
    identity: TokenIdentity,
}

/// The configured tokens, checked in constant time.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<TokenEntry>,
}

pub(super) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub(super) fn hash_name(digest: &[u8; 32]) -> String {
    format!("sha256:{}", &faramesh_proto::canonical::to_hex(digest)[..12])
}

impl Tokens {
    /// Reads the env tokens and the tokens file.
    ///
    /// Tokens file: a JSON array of `{"name", "role": "agent"|"approver", "token" or
    /// "token_sha256", "agents": [..]?}`.
    pub fn load(config: &HttpConfig) -> Result<Tokens, ServerError> {
        let mut entries = Vec::new();
        for (token, role) in [(&config.agent_token, Role::Agent), (&config.approver_token, Role::Approver)] {
            if let Some(t) = token.as_deref().filter(|t| !t.is_empty()) {
                let digest = sha256(t.as_bytes());
                entries.push(TokenEntry {
                    sha256: digest,
                    identity: TokenIdentity { name: hash_name(&digest), role, agents: None, for_peer: None },
                });
            }
        }
        if let Some(path) = &config.tokens_file {
            entries.extend(read_tokens_file(path)?);
        }
        if entries.is_empty() && config.login_secret.is_none() && !config.anonymous_agents {
            return Err(ListenerError::NoTokens.into());
        }
        Ok(Tokens { entries })
    }

    /// The identity of a presented token, comparing against every configured token in
    /// constant time.
    pub fn identify(&self, presented: &str) -> Option<TokenIdentity> {
        let digest = sha256(presented.as_bytes());
        let mut found = None;
        for e in &self.entries {
            if faramesh_daemon::service::logins::constant_time_eq(&e.sha256, &digest) && found.is_none() {
                found = Some(e.identity.clone());
            }
        }
        found
    }
}

/// One entry of the tokens file, as written. An unknown key is an error: a misspelled
/// `agents` would otherwise leave a token unbound, able to act for any agent.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    name: Option<String>,
    role: Role,
    token: Option<String>,
    token_sha256: Option<String>,
    agents: Option<Vec<String>>,
}

pub(super) fn read_tokens_file(path: &Path) -> Result<Vec<TokenEntry>, ServerError> {
    let text = std::fs::read_to_string(path).map_err(|e| ServerError::io("read the tokens file", path, e))?;
    let items: Vec<Value> = serde_json::from_str(&text)
        .map_err(|source| ListenerError::TokensJson { path: path.to_owned(), source })?;
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let bad = |why: String| {
            ServerError::from(ListenerError::TokenEntry { path: path.to_owned(), entry: i + 1, why })
        };
        match item.get("role").and_then(Value::as_str) {
            Some("agent" | "approver") => {}
            other => return Err(bad(format!("`role` must be `agent` or `approver`, not {other:?}"))),
        }
        let entry: FileEntry = serde_json::from_value(item).map_err(|e| bad(e.to_string()))?;
        let digest = match (entry.token.as_deref(), entry.token_sha256.as_deref()) {
            (Some(t), None) if !t.is_empty() => sha256(t.as_bytes()),
            (None, Some(h)) => {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(h, &mut digest)
                    .map_err(|_| bad("`token_sha256` must be 64 hex characters".into()))?;
                digest
            }
            _ => return Err(bad("give one of `token` or `token_sha256`".into())),
        };
        let role = entry.role;
        let name = entry.name.map_or_else(|| hash_name(&digest), |n| format!("{}:{n}", role.as_str()));
        out.push(TokenEntry {
            sha256: digest,
            identity: TokenIdentity { name, role, agents: entry.agents, for_peer: None },
        });
    }
    Ok(out)
}
