//! The token path: a call with a cached valid token against the first call after the token
//! has expired, which must refresh it at the identity provider before it can go out.
//!
//! The FakeIdp issues access tokens that live 62 s. The proxy uses a token while it has more
//! than 60 s left (`REFRESH_MARGIN_SECS`), so each token is usable for one to two seconds: the
//! bench waits 2.1 s, and the next call pays for a refresh (token request, rotation of the
//! refresh token, the atomic write of the cache file) on its way. The calls right after it find
//! the new token in memory. Whether a call refreshed is not guessed from the clock but read
//! from the provider's own count of refresh grants, so a different margin would show up as
//! "refreshes seen" below the plan, not as wrong figures.
//!
//! The first refresh of a process also reads the provider's discovery document (a warm start
//! never needs it); it is reported on its own and left out of the median.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use crate::{
    backend::{BenchBackend, TokenCheck},
    login::{self, OURS_MARKER},
    measure::{ECHO, echo_args, median},
    peers::{Dirs, DropIn, ours_command},
    rpc::{Stderr, StdioPeer},
    support::{
        free_port,
        idp::{FakeIdp, IdpConfig},
    },
};

/// Lifetime of the access tokens: usable for 1–2 s with the proxy's 60 s margin.
const TOKEN_TTL: Duration = Duration::from_secs(62);
/// Long enough for any token to have fallen inside the margin.
const UNTIL_STALE: Duration = Duration::from_millis(2100);

/// How many samples.
#[derive(Debug, Clone)]
pub struct TokenPlan {
    /// Refreshes timed after the first.
    pub refreshes: usize,
    /// Cached-token calls timed after each refresh.
    pub cached_calls: usize,
}

/// What the token path measured.
#[derive(Debug, Clone)]
pub struct TokenFigures {
    /// Median call with the token in memory.
    pub cached: Duration,
    /// Median call that refreshed first.
    pub refresh: Duration,
    /// The process's first refresh (with discovery).
    pub first_refresh: Option<Duration>,
    /// Refresh grants the provider served during the timed calls.
    pub refreshes_seen: usize,
    /// Refreshes planned.
    pub refreshes_planned: usize,
}

/// Runs our drop-in against a token-validating backend of a short-lived-token provider.
pub async fn run(bin: &Path, dirs: &Dirs, plan: &TokenPlan) -> Result<TokenFigures, String> {
    let idp = FakeIdp::start(IdpConfig {
        client_id: "bench-token-path".into(),
        access_token_ttl: TOKEN_TTL,
        ..IdpConfig::default()
    })
    .await;
    let backend = BenchBackend::start(
        "token-path",
        1,
        Some(TokenCheck {
            issuer: idp.issuer(),
            jwks_uri: idp.jwks_uri(),
            audience: "mcp-backend".into(),
        }),
    )
    .await?;
    let drop_in = DropIn {
        backend_url: backend.url(),
        issuer: idp.issuer(),
        client_id: idp.client_id(),
        redirect_port: free_port(),
        home: dirs.dir("home-token-path")?,
    };
    let log = dirs.log("ours-token-path");
    let args = echo_args();
    let label = "ours (token path)";
    login::warm_cache(
        ours_command(bin, &drop_in),
        label,
        &log,
        OURS_MARKER,
        ECHO,
        &args,
    )
    .await?;

    let mut peer = StdioPeer::spawn(ours_command(bin, &drop_in), label, Stderr::File(log))?;
    peer.initialize().await?;
    let mut first_refresh = None;
    let (mut refreshes, mut cached) = (Vec::new(), Vec::new());
    let mut seen = 0;
    for round in 0..=plan.refreshes {
        tokio::time::sleep(UNTIL_STALE).await;
        let timed = timed_calls(&mut peer, &idp, 1 + plan.cached_calls).await?;
        for (took, refreshed) in timed {
            match (refreshed, round) {
                (true, 0) => first_refresh = Some(took),
                (true, _) => {
                    refreshes.push(took);
                    seen += 1;
                }
                (false, _) => cached.push(took),
            }
        }
    }
    peer.close().await;
    Ok(TokenFigures {
        cached: median(&cached),
        refresh: median(&refreshes),
        first_refresh,
        refreshes_seen: seen,
        refreshes_planned: plan.refreshes,
    })
}

/// `count` calls, each timed and marked with whether the provider served a refresh meanwhile.
async fn timed_calls(
    peer: &mut StdioPeer,
    idp: &FakeIdp,
    count: usize,
) -> Result<Vec<(Duration, bool)>, String> {
    let args = echo_args();
    let mut timed = Vec::with_capacity(count);
    for _ in 0..count {
        let before = idp.stats().refreshes;
        let started = Instant::now();
        peer.call(ECHO, &args).await?;
        let took = started.elapsed();
        timed.push((took, idp.stats().refreshes > before));
    }
    Ok(timed)
}
