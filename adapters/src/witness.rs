//! Submitting checkpoints to C2SP witnesses over HTTP(S) (`docs/operations.md#witnesses`). The
//! core builds the `add-checkpoint` request, verifies the cosignatures and records them; this
//! only posts it and reads the answer.

use faramesh_daemon::service::outbound::{Sending, WitnessPost};

use crate::http::Client;

/// Most bytes read from a witness's answer.
const MAX_ANSWER: usize = 64 << 10;

/// Posts to witnesses, trusting the web PKI roots.
#[derive(Debug, Clone, Default)]
pub struct Witnesses {
    http: Client,
}

impl Witnesses {
    /// Witnesses reached with a client trusting the web PKI roots.
    pub fn new() -> Witnesses {
        Witnesses { http: Client::new() }
    }
}

impl WitnessPost for Witnesses {
    fn post<'a>(&'a self, url: &'a str, body: String) -> Sending<'a, (u16, String)> {
        Box::pin(async move {
            let (status, answer) = self
                .http
                .post(url, "text/plain; charset=utf-8", bytes::Bytes::from(body), Vec::new(), MAX_ANSWER)
                .await?;
            Ok((status.as_u16(), String::from_utf8_lossy(&answer).into_owned()))
        })
    }
}
