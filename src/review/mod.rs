//! LangSmith annotation queues as a destination: a run rated negatively is added to the queue
//! its route's `on_negative.queue` names (`queue.rs`). Like `slack/` and `email/`, a folder of
//! deliverers that imports `delivery`, `jobs`, `state` and `follow_through`, never another
//! channel; the HTTP calls are `langsmith::queues`'s.

pub(crate) mod queue;
