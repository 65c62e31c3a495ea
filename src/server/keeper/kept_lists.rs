//! A gateway backend's lists, as its keeper last read them: read whole and concurrently when
//! the backend connects and again when it says they changed (one read at a time, so an older
//! read never overwrites a newer one), each change counted so the merged lists know when to
//! merge again, and announced to the client with `list_changed`.

use std::sync::{Arc, atomic::Ordering};

use rmcp::model::{Prompt, Resource, ResourceTemplate, ServerNotification, Tool};
use tokio_util::sync::CancellationToken;

use super::{Keeper, Shared, Status};
use crate::{
    backend::{Connection, ListChanged, Origin},
    lists::{self, Item, Kind, Lists},
    remembered::Remembered,
};

impl Keeper {
    /// The backend's list of `T` as last read while it is connected; before its first fresh
    /// read, the one remembered from the last run.
    pub fn listed<T: Item>(&self) -> Option<Arc<Vec<T>>> {
        if matches!(&*self.status.borrow(), Status::Ready(_))
            && let Some(fresh) = T::of(&*self.lists.lock().ok()?).clone()
        {
            return Some(fresh);
        }
        T::of(&self.recalled.lock().ok()?.as_ref()?.lists).clone()
    }

    pub(super) fn forget_lists(&self) {
        if let Ok(mut lists) = self.lists.lock() {
            *lists = Lists::default();
        }
        self.version.fetch_add(1, Ordering::SeqCst);
    }

    /// Reads the lists of `kinds` from the backend, whole and concurrently; a list the backend
    /// does not serve is empty, and one it fails to give (or gives too slowly: its
    /// `request_timeout`) is empty too, with a warning naming the backend; one whose later
    /// page fails is served as far as it was read. Only when every list was read whole are
    /// they remembered for the next run (see [`remembered`](crate::remembered)); `true` then.
    pub async fn read_lists(
        &self,
        connection: &Connection,
        kinds: &[Kind],
        cancelled: &CancellationToken,
    ) -> bool {
        let _one_at_a_time = self.reading.lock().await;
        let whole = futures::join!(
            self.read_list::<Tool>(connection, kinds, cancelled),
            self.read_list::<Prompt>(connection, kinds, cancelled),
            self.read_list::<Resource>(connection, kinds, cancelled),
            self.read_list::<ResourceTemplate>(connection, kinds, cancelled),
        );
        let whole = whole.0 && whole.1 && whole.2 && whole.3;
        if whole {
            self.remember(connection);
        }
        whole
    }

    /// After a fresh read: what was recalled from the last run is no longer served, and what
    /// the backend is now is remembered (in the background) if it differs. `Some(kinds)` when
    /// something was recalled: the kinds of list that changed since, which the client, who may
    /// have been sent the recalled ones, must hear of.
    pub(super) fn take_recalled(&self) -> Option<Vec<Kind>> {
        let recalled = self.recalled.lock().ok()?.take()?;
        self.version.fetch_add(1, Ordering::SeqCst);
        let lists = self.lists.lock().ok()?.clone();
        let fresh = Remembered::of(None, &lists);
        let mut was = recalled.remembered;
        was.introduction = None;
        Some(was.changed(&fresh))
    }

    /// In the drop-in, which reads lists only when the client asks: what was recalled is no
    /// longer served once the backend is connected.
    pub(super) fn drop_recalled(&self) {
        if let Ok(mut recalled) = self.recalled.lock() {
            *recalled = None;
        }
    }

    /// The drop-in's answer to a list request from what the backend listed last time, while it
    /// has not been connected in this run.
    pub fn recalled_answer(&self, kind: Kind) -> Option<rmcp::model::ServerResult> {
        fn answer<T: Item>(keeper: &Keeper) -> Option<rmcp::model::ServerResult> {
            let recalled = keeper.recalled.lock().ok()?;
            let items = T::of(&recalled.as_ref()?.lists).as_deref()?.clone();
            Some(T::answer(T::fresh_page(), items))
        }
        match kind {
            Kind::Tools => answer::<Tool>(self),
            Kind::Prompts => answer::<Prompt>(self),
            Kind::Resources => answer::<Resource>(self),
            Kind::Templates => answer::<ResourceTemplate>(self),
        }
    }

    /// The drop-in remembers each whole list it relays (and the backend's introduction), for
    /// the next start; in the background.
    pub fn remember_answer(&self, connection: &Connection, answer: &rmcp::model::ServerResult) {
        let Some(memory) = self.memory.clone() else {
            return;
        };
        let answer = answer.clone();
        let introduction = connection.info().map(|i| (*i).clone());
        let name = self.backend.name.clone();
        tokio::task::spawn_blocking(move || {
            let mut remembered = memory.recall().unwrap_or_default();
            remembered.introduction = introduction;
            fn items<T: Item>(answer: rmcp::model::ServerResult) -> Option<Vec<T>> {
                let mut page = T::page(answer)?;
                Some(T::take(&mut page).0)
            }
            use rmcp::model::ServerResult as R;
            match &answer {
                R::ListToolsResult(_) => remembered.tools = items(answer),
                R::ListPromptsResult(_) => remembered.prompts = items(answer),
                R::ListResourcesResult(_) => remembered.resources = items(answer),
                R::ListResourceTemplatesResult(_) => remembered.templates = items(answer),
                _ => return,
            }
            if let Err(e) = memory.keep(remembered) {
                tracing::warn!(
                    "Could not remember the lists of backend '{name}' in {}: {e}",
                    memory.path().display()
                );
            }
        });
    }

    /// Writes what the backend is now to its memory, in the background.
    fn remember(&self, connection: &Connection) {
        let Some(memory) = self.memory.clone() else {
            return;
        };
        let Ok(lists) = self.lists.lock().map(|l| l.clone()) else {
            return;
        };
        let fresh = Remembered::of(connection.info().map(|i| (*i).clone()), &lists);
        let same = self
            .recalled
            .lock()
            .is_ok_and(|r| r.as_ref().is_some_and(|r| r.remembered == fresh));
        if same {
            return;
        }
        let name = self.backend.name.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = memory.keep(fresh) {
                tracing::warn!(
                    "Could not remember the lists of backend '{name}' in {}: {e}",
                    memory.path().display()
                );
            }
        });
    }

    /// Reads and keeps the list of `T`, if `kinds` has it; `false` if reading it failed.
    pub(super) async fn read_list<T: Item>(
        &self,
        connection: &Connection,
        kinds: &[Kind],
        cancelled: &CancellationToken,
    ) -> bool {
        if !kinds.contains(&T::KIND) {
            return true;
        }
        let mut whole = true;
        let served = connection
            .info()
            .is_some_and(|info| T::KIND.served_by(&info.capabilities));
        let items = if !served {
            Vec::new()
        } else {
            match lists::read_all::<T>(connection, cancelled, lists::LIMITS, Origin::Proxy).await {
                Ok(listing) => {
                    whole = listing.complete;
                    listing.items
                }
                // Given up on (the client's request, or the proxy stopping): what was kept stays.
                Err(_) if cancelled.is_cancelled() => return false,
                Err(e) => {
                    whole = false;
                    tracing::warn!(
                        "Listing {} without backend '{}': {}",
                        T::KIND.items(),
                        self.backend.name,
                        e
                    );
                    Vec::new()
                }
            }
        };
        if let Ok(mut lists) = self.lists.lock() {
            *T::of_mut(&mut lists) = Some(Arc::new(items));
        }
        self.version.fetch_add(1, Ordering::SeqCst);
        whole
    }

    /// "13 tools, 1 prompt, 2 resources, 1 resource template", as last read.
    pub(super) fn counts(&self) -> String {
        let lists = self.lists.lock().map(|l| l.clone()).unwrap_or_default();
        format!(
            "{} tools, {} prompts, {} resources, {} resource templates",
            lists.count(Kind::Tools),
            lists.count(Kind::Prompts),
            lists.count(Kind::Resources),
            lists.count(Kind::Templates)
        )
    }
}

/// The lists a backend's `list_changed` is about.
pub(super) fn kinds_of(changed: ListChanged) -> &'static [Kind] {
    match changed {
        ListChanged::Tools => &[Kind::Tools],
        ListChanged::Prompts => &[Kind::Prompts],
        ListChanged::Resources => &[Kind::Resources, Kind::Templates],
    }
}

/// Tells the client that the lists of `kinds` changed (once the initialize answer is out); the
/// lists of a backend's `first` attempt only where the client has been sent that kind of list.
pub(super) async fn announce(shared: &Shared, kinds: &[Kind], first: bool) {
    if !shared.announce.load(Ordering::SeqCst) {
        return;
    }
    let changed = |kind: Kind| {
        kinds.contains(&kind) && (!first || shared.listed[kind.index()].load(Ordering::SeqCst))
    };
    let client = &shared.downstream;
    if changed(Kind::Tools) {
        client
            .notify(ServerNotification::ToolListChangedNotification(
                Default::default(),
            ))
            .await;
    }
    if changed(Kind::Prompts) {
        client
            .notify(ServerNotification::PromptListChangedNotification(
                Default::default(),
            ))
            .await;
    }
    if changed(Kind::Resources) || changed(Kind::Templates) {
        client
            .notify(ServerNotification::ResourceListChangedNotification(
                Default::default(),
            ))
            .await;
    }
}
