//! Operating the daemon: reload the policy, prune, mark exported, back up the log, sign-in links.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Identity, PruneRequest, Service, ServiceError, to_json};

impl Service {
    /// `log.prune`: plans (`dry_run`) or carries out a prune. See [`crate::log::Log::prune`].
    pub async fn log_prune(&self, req: PruneRequest, who: &Identity) -> Result<Value, ServiceError> {
        self.may_manage_log(who)?;
        let log = &self.state.log;
        let outcome = if req.dry_run {
            log.dry_run_prune(req.cut)?
        } else {
            log.prune(req.cut, req.force, to_json("who prunes", &who.caller())?).await?
        };
        serde_json::to_value(outcome).map_err(|e| ServiceError::internal(e.to_string()).caused_by(e))
    }

    /// `log.exported`: records that entries `from_seq..=through_seq` were exported.
    pub async fn log_exported(
        &self,
        from_seq: u64,
        through_seq: u64,
        who: &Identity,
    ) -> Result<Value, ServiceError> {
        self.may_manage_log(who)?;
        let log = Arc::clone(&self.state.log);
        let through = tokio::task::spawn_blocking(move || log.mark_exported(from_seq, through_seq))
            .await
            .map_err(|e| ServiceError::internal(e.to_string()).caused_by(e))??;
        Ok(json!({"exported_through": through}))
    }

    /// `log.backup`: a consistent copy of the log written to `backup-<random>.redb` in the state
    /// dir (where the daemon may write); the operator's tool moves it where it was asked to.
    pub async fn log_backup(&self, who: &Identity) -> Result<Value, ServiceError> {
        self.may_manage_log(who)?;
        // A name of its own per backup: two at once never write (or remove) each other's file.
        let suffix = crate::log::random_hex(8)
            .map_err(|e| ServiceError::internal(format!("no randomness: {e}")).caused_by(e))?;
        let dest = self.state.state_dir.join(format!("backup-{suffix}.redb"));
        let log = Arc::clone(&self.state.log);
        let path = dest.clone();
        let batches = tokio::task::spawn_blocking(move || log.backup(&path))
            .await
            .map_err(|e| ServiceError::internal(e.to_string()).caused_by(e))??;
        Ok(json!({"path": dest.display().to_string(), "batches": batches}))
    }

    /// `dashboard.login`: a fresh one-time sign-in link secret (it opens an approver session),
    /// for those who may approve.
    pub fn dashboard_login(&self, who: &Identity) -> Result<Value, ServiceError> {
        if !self.may_approve(who) {
            return Err(ServiceError::not_authorized(format!(
                "not authorized: {} may not sign in to the dashboard as an approver",
                who.describe()
            )));
        }
        let secret = self
            .state
            .logins
            .mint(who.peer(), self.clock.monotonic())
            .map_err(|e| ServiceError::internal(format!("no randomness: {e}")).caused_by(e))?;
        let url = self.state.http.as_ref().map(|h| format!("{}/login/{secret}", h.url));
        Ok(json!({"secret": secret, "url": url, "expires_in_seconds": 600}))
    }

    /// Reloads the policy now (root, the daemon's uid or an approver).
    pub async fn reload(&self, who: &Identity) -> Result<Value, ServiceError> {
        self.may_reload(who)?;
        Ok(match self.state.reload().await {
            Ok(hash) => json!({"ok": true, "policy_hash": hash, "status": self.state.policy_status()}),
            Err(e) => json!({"ok": false, "error": e.to_string(), "status": self.state.policy_status()}),
        })
    }
}
