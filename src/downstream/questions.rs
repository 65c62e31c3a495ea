//! A backend of the older revision asks the client things (an elicitation, a sampling, the
//! roots) by sending it requests while it works on a call. A 2026-07-28 client takes no
//! requests from a server: it hears them as the answer to its own call, `input_required`, and
//! calls again with the answers (`inputResponses`) and the `requestState` it was given (MRTR).
//!
//! So, for a modern client, a call to such a backend runs in a task of its own
//! ([`Questions::call`]):
//! - it ends with the backend's answer, which is the client's answer; or
//! - the backend asks: the client's call is answered `input_required` with the question(s),
//!   and the backend's call is **parked** under a fresh `requestState`;
//! - the client's retry with that state hands each answer to the question waiting for it and
//!   waits again on the same backend call — if it comes within [`PARKED_FOR`].
//!
//! A backend's question goes to a call to that backend whose client is waiting (the oldest),
//! else to one parked; with none, the backend is told that this client can only be asked
//! during a call.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::future::BoxFuture;
use rmcp::model::{
    ClientResult, ElicitResult, ErrorCode, ErrorData, InputRequest, InputRequiredResult,
    ServerRequest, ServerResult,
};
#[allow(deprecated)] // Sampling and roots are deprecated by SEP-2577, yet backends still ask.
use rmcp::model::{CreateMessageResult, ListRootsResult};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{request_error::RequestError, shape};

/// How long a parked call waits for the client's retry.
pub const PARKED_FOR: Duration = Duration::from_secs(10 * 60);

/// The backend's work on one client call.
pub type Work = BoxFuture<'static, Result<ServerResult, RequestError>>;

/// A backend's request, waiting for the client's answer.
struct Question {
    request: ServerRequest,
    answer: oneshot::Sender<Result<ClientResult, ErrorData>>,
}

/// Where a call in progress hears its backend's questions.
struct Listener {
    backend: Arc<str>,
    to: mpsc::UnboundedSender<Question>,
    /// The client is waiting on the call (rather than it being parked).
    waited_on: Arc<AtomicBool>,
}

/// A call in its own task.
struct Call {
    backend: Arc<str>,
    outcome: oneshot::Receiver<Result<ServerResult, RequestError>>,
    questions: mpsc::UnboundedReceiver<Question>,
    waited_on: Arc<AtomicBool>,
    /// Asked of the client, by the key it answers under.
    asked: HashMap<String, Question>,
    /// Cancels the backend's call once the call is dropped: answered, given up, or expired.
    _stop: DropGuard,
}

/// The backends' questions and the calls that carry them, for one client.
#[derive(Default)]
pub struct Questions {
    /// Calls in progress, oldest first.
    listening: Mutex<Vec<Listener>>,
    /// Calls waiting for the client's retry, by `requestState`;
    /// shared with the timers that drop them after [`PARKED_FOR`].
    parked: Arc<Mutex<HashMap<String, Call>>>,
}

impl Questions {
    /// `request` of backend `backend`, asked of the client through a call to that backend;
    /// `cancelled`: the backend gave up.
    pub async fn ask(
        &self,
        backend: &str,
        request: ServerRequest,
        cancelled: &CancellationToken,
    ) -> Result<ClientResult, ErrorData> {
        if let ServerRequest::PingRequest(_) = request {
            // The backend asks whether the session is alive; it is.
            return Ok(ClientResult::empty(()));
        }
        let method = shape::method(&request);
        let (answer, answered) = oneshot::channel();
        let mut question = Some(Question { request, answer });
        if let Ok(mut listening) = self.listening.lock() {
            listening.retain(|l| !l.to.is_closed());
            let mut candidates: Vec<&Listener> = listening
                .iter()
                .filter(|l| &*l.backend == backend)
                .collect();
            // Calls the client waits on first, each group oldest first.
            candidates.sort_by_key(|l| !l.waited_on.load(Ordering::SeqCst));
            for listener in candidates {
                let Some(q) = question.take() else { break };
                if let Err(mpsc::error::SendError(q)) = listener.to.send(q) {
                    question = Some(q);
                }
            }
        }
        if question.is_some() {
            return Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!(
                    "{method}: the client speaks MCP 2026-07-28, where a server asks only in \
                     answer to a call, and no call to this server is in progress"
                ),
                None,
            ));
        }
        tokio::select! {
            answer = answered => answer.unwrap_or_else(|_| Err(ErrorData::new(
                ErrorCode::INTERNAL_ERROR,
                "the client's call ended before the client answered",
                None,
            ))),
            () = cancelled.cancelled() => Err(ErrorData::new(
                ErrorCode::INTERNAL_ERROR,
                "cancelled",
                None,
            )),
        }
    }

    /// Answers the client's call to `backend`: a retry carrying a `state` this client was
    /// given goes on with its parked call, handing over `responses`; anything else starts
    /// `work` (the backend's call, stopped when its token is cancelled) in a task of its own.
    /// `cancelled`: the client gave up on this request, and so on the call.
    pub async fn call(
        &self,
        backend: &str,
        state: Option<&str>,
        responses: Option<BTreeMap<String, Value>>,
        work: impl FnOnce(CancellationToken) -> Work,
        cancelled: &CancellationToken,
    ) -> Result<ServerResult, RequestError> {
        let call = match state.and_then(|state| self.unpark(backend, state)) {
            Some(mut call) => {
                let mut responses = responses.unwrap_or_default();
                for (key, question) in call.asked.drain() {
                    let answer = match responses.remove(&key) {
                        Some(value) => answer_of(&question.request, value),
                        None => Err(ErrorData::invalid_params(
                            format!("the client sent no answer for '{key}'"),
                            None,
                        )),
                    };
                    let _ = question.answer.send(answer);
                }
                call
            }
            None => self.start(backend, work),
        };
        self.wait(call, cancelled).await
    }

    /// `work` in a task of its own, listening for `backend`'s questions.
    fn start(&self, backend: &str, work: impl FnOnce(CancellationToken) -> Work) -> Call {
        let backend: Arc<str> = backend.into();
        let (to, questions) = mpsc::unbounded_channel();
        let waited_on = Arc::new(AtomicBool::new(true));
        if let Ok(mut listening) = self.listening.lock() {
            listening.push(Listener {
                backend: Arc::clone(&backend),
                to,
                waited_on: Arc::clone(&waited_on),
            });
        }
        let stop = CancellationToken::new();
        let (done, outcome) = oneshot::channel();
        let work = work(stop.clone());
        tokio::spawn(async move {
            let _ = done.send(work.await);
        });
        Call {
            backend,
            outcome,
            questions,
            waited_on,
            asked: HashMap::new(),
            _stop: stop.drop_guard(),
        }
    }

    /// Waits for the call's answer, or for its backend's questions, which park it.
    async fn wait(
        &self,
        mut call: Call,
        cancelled: &CancellationToken,
    ) -> Result<ServerResult, RequestError> {
        call.waited_on.store(true, Ordering::SeqCst);
        let first = tokio::select! {
            outcome = &mut call.outcome => {
                return outcome.unwrap_or_else(|_| Err(RequestError::internal("the call's task ended")));
            }
            question = call.questions.recv() => question,
            () = cancelled.cancelled() => return Err(RequestError::internal("cancelled by the client")),
        };
        let Some(first) = first else {
            return Err(RequestError::internal("the call's task ended"));
        };
        call.waited_on.store(false, Ordering::SeqCst);
        // The questions asked together go out together.
        let mut questions = vec![first];
        while let Ok(more) = call.questions.try_recv() {
            questions.push(more);
        }
        let mut requests = BTreeMap::new();
        for question in questions {
            let key = format!("q{}", call.asked.len() + requests.len());
            match input_request(&question.request) {
                Some(request) => {
                    requests.insert(key.clone(), request);
                    call.asked.insert(key, question);
                }
                None => {
                    let method = shape::method(&question.request);
                    let _ = question.answer.send(Err(ErrorData::new(
                        ErrorCode::METHOD_NOT_FOUND,
                        format!("{method}: not something a 2026-07-28 client can be asked"),
                        None,
                    )));
                }
            }
        }
        if requests.is_empty() {
            return Box::pin(self.wait(call, cancelled)).await;
        }
        let state = fresh_state();
        if let Ok(mut parked) = self.parked.lock() {
            parked.insert(state.clone(), call);
        }
        // A client that never comes back: its call is dropped, which cancels it at the backend.
        let (parked, expired) = (Arc::downgrade(&self.parked), state.clone());
        tokio::spawn(async move {
            tokio::time::sleep(PARKED_FOR).await;
            if let Some(parked) = parked.upgrade()
                && let Ok(mut parked) = parked.lock()
            {
                parked.remove(&expired);
            }
        });
        Ok(ServerResult::InputRequiredResult(InputRequiredResult::new(
            Some(requests),
            Some(state),
        )))
    }

    /// The call parked under `state` for `backend`, if it is still there.
    fn unpark(&self, backend: &str, state: &str) -> Option<Call> {
        let mut parked = self.parked.lock().ok()?;
        if parked.get(state).is_some_and(|c| &*c.backend == backend) {
            parked.remove(state)
        } else {
            None
        }
    }
}

/// A `requestState` no other call of this process has: a counter, and a per-process random
/// key so that no state of an earlier run is taken for one of this run.
fn fresh_state() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::{LazyLock, atomic::AtomicU64};
    static KEY: LazyLock<std::collections::hash_map::RandomState> = LazyLock::new(Default::default);
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let mut hasher = KEY.build_hasher();
    hasher.write_u64(n);
    format!("authful-mcp-proxy/{n}-{:016x}", hasher.finish())
}

/// The question as a 2026-07-28 input request; `None` for what is not one.
fn input_request(request: &ServerRequest) -> Option<InputRequest> {
    match request {
        ServerRequest::CreateMessageRequest(r) => Some(InputRequest::CreateMessage(r.clone())),
        ServerRequest::ElicitRequest(r) => Some(InputRequest::Elicitation(r.clone())),
        ServerRequest::ListRootsRequest(r) => Some(InputRequest::ListRoots(r.clone())),
        _ => None,
    }
}

/// The client's answer to `request`, read as the result that request expects.
#[allow(deprecated)] // Sampling and roots are deprecated by SEP-2577, yet backends still ask.
fn answer_of(request: &ServerRequest, value: Value) -> Result<ClientResult, ErrorData> {
    let misfit = |e: serde_json::Error| {
        ErrorData::invalid_params(format!("the client's answer does not fit: {e}"), None)
    };
    match request {
        ServerRequest::CreateMessageRequest(_) => {
            serde_json::from_value::<CreateMessageResult>(value)
                .map(|r| ClientResult::CreateMessageResult(Box::new(r)))
                .map_err(misfit)
        }
        ServerRequest::ElicitRequest(_) => serde_json::from_value::<ElicitResult>(value)
            .map(ClientResult::ElicitResult)
            .map_err(misfit),
        ServerRequest::ListRootsRequest(_) => serde_json::from_value::<ListRootsResult>(value)
            .map(ClientResult::ListRootsResult)
            .map_err(misfit),
        _ => Err(ErrorData::invalid_params(
            "not a question this client answers",
            None,
        )),
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::{ElicitRequest, ElicitRequestParams, ElicitationSchema};
    use serde_json::json;

    use super::*;

    fn elicitation() -> ServerRequest {
        let schema = ElicitationSchema::builder()
            .required_string("answer")
            .build()
            .unwrap();
        ServerRequest::ElicitRequest(ElicitRequest::new(
            ElicitRequestParams::FormElicitationParams {
                meta: None,
                message: "Your name?".into(),
                requested_schema: schema,
            },
        ))
    }

    /// Work that ends only when stopped, and says so on `stopped`.
    fn endless(stopped: Arc<AtomicBool>) -> impl FnOnce(CancellationToken) -> Work {
        move |stop| {
            Box::pin(async move {
                stop.cancelled().await;
                stopped.store(true, Ordering::SeqCst);
                Err(RequestError::internal("stopped"))
            })
        }
    }

    /// Backend `a` asks its question once the call the test starts listens; with `b_first`,
    /// backend `b` (with no call in progress) asks first and is refused.
    fn ask_soon(
        questions: &Arc<Questions>,
        never: &CancellationToken,
        b_first: bool,
    ) -> tokio::task::JoinHandle<Result<ClientResult, ErrorData>> {
        let (questions, never) = (Arc::clone(questions), never.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if b_first {
                let other = questions.ask("b", elicitation(), &never).await;
                assert_eq!(other.unwrap_err().code, ErrorCode::METHOD_NOT_FOUND);
            }
            questions.ask("a", elicitation(), &never).await
        })
    }

    /// A question reaches a call to its own backend only; the call is answered
    /// `input_required`, and the retry hands the answer to the question.
    #[tokio::test]
    async fn a_question_goes_only_to_a_call_of_its_backend() {
        let questions = Arc::new(Questions::default());
        let never = CancellationToken::new();
        let stopped = Arc::new(AtomicBool::new(false));
        let asking = ask_soon(&questions, &never, true);
        let first = questions
            .call("a", None, None, endless(Arc::clone(&stopped)), &never)
            .await
            .unwrap();
        let ServerResult::InputRequiredResult(asked) = first else {
            panic!("{first:?}")
        };
        let state = asked.request_state.unwrap();
        let keys: Vec<_> = asked.input_requests.unwrap().into_keys().collect();
        assert_eq!(keys, ["q0"]);
        let responses = BTreeMap::from([(
            "q0".to_owned(),
            json!({"action": "accept", "content": {"answer": "Ada"}}),
        )]);
        let resumed = {
            let questions = Arc::clone(&questions);
            let never = never.clone();
            let state = state.clone();
            tokio::spawn(async move {
                questions
                    .call(
                        "a",
                        Some(&state),
                        Some(responses),
                        |_| unreachable!(),
                        &never,
                    )
                    .await
            })
        };
        let answer = asking.await.unwrap().unwrap();
        assert!(
            matches!(answer, ClientResult::ElicitResult(_)),
            "{answer:?}"
        );
        // The spent state is no longer parked; the call goes on until it is given up.
        assert!(questions.unpark("a", &state).is_none());
        resumed.abort();
        let _ = resumed.await;
        tokio::task::yield_now().await;
        assert!(
            stopped.load(Ordering::SeqCst),
            "the given-up call was not stopped"
        );
    }

    /// A call the client never comes back for is dropped after [`PARKED_FOR`], which stops it
    /// at the backend.
    #[tokio::test(start_paused = true)]
    async fn a_call_never_retried_is_stopped_after_it_was_parked_for_long() {
        let questions = Arc::new(Questions::default());
        let never = CancellationToken::new();
        let stopped = Arc::new(AtomicBool::new(false));
        let asking = ask_soon(&questions, &never, false);
        let first = questions
            .call("a", None, None, endless(Arc::clone(&stopped)), &never)
            .await
            .unwrap();
        assert!(matches!(first, ServerResult::InputRequiredResult(_)));
        tokio::time::sleep(PARKED_FOR - Duration::from_secs(1)).await;
        assert!(!stopped.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_secs(2)).await;
        tokio::task::yield_now().await;
        assert!(
            stopped.load(Ordering::SeqCst),
            "the abandoned call still runs"
        );
        let asked = asking.await.unwrap();
        assert!(asked.is_err(), "the question was answered: {asked:?}");
    }
}
