//! Property tests (proptest) for the parts that take untrusted or hand-written input: `${VAR}`
//! interpolation, configuration parsing and `validate`, the gateway's naming (prefixes, URIs,
//! the 64-character rule) and merged catalog, glob filters, and the login callback's query.
//!
//! Each property states its case count; the counts are set explicitly (`cases(N)`), so
//! `PROPTEST_CASES` does not change them. Failures are not persisted to a regression file:
//! a minimal failing case found here becomes a unit test in the module that owns the code.
//!
//! One module per subject: `interpolation` (`${VAR}`), `config` (parsing, `validate` and the
//! start-up path), `naming` (prefixes, URIs, the 64-character rule), `catalog` (the merged
//! catalog through the real gateway and real backends), `globs` (tool filters) and `callback`
//! (the login callback's query over HTTP). Here: [`cases`] and the runtime the socket-using
//! properties share.

mod callback;
mod catalog;
mod config;
mod globs;
mod interpolation;
mod naming;

use std::sync::LazyLock;

use proptest::prelude::ProptestConfig;

/// `cases` cases, no regression file (see the module comment).
fn cases(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    }
}

/// One runtime for the properties that need sockets; `block_on` from several test threads at
/// once is fine on a multi-thread runtime.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
});
