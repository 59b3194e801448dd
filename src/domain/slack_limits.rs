//! Slack's Block Kit limits, in one place: the renderer keeps within them, `check-config`
//! refuses settings that cannot, and the renderer's `check_limits` states them as a
//! checkable list.

/// Slack rejects a message with more blocks (`invalid_blocks`).
pub(crate) const MAX_BLOCKS: usize = 50;
/// Longest `text` of a section block.
pub(crate) const MAX_SECTION_TEXT: usize = 3_000;
/// Longest text of one section field.
pub(crate) const MAX_FIELD_TEXT: usize = 2_000;
/// Most fields in one section block.
pub(crate) const MAX_FIELDS: usize = 10;
/// Longest header text.
pub(crate) const MAX_HEADER_TEXT: usize = 150;
/// Longest button text.
pub(crate) const MAX_BUTTON_TEXT: usize = 75;
/// Longest button `url`. A longer presigned URL is dropped, never cut: a cut URL records the
/// wrong feedback or none.
pub(crate) const MAX_BUTTON_URL: usize = 3_000;
/// Longest `action_id` (and `block_id`).
pub(crate) const MAX_ACTION_ID: usize = 255;
/// Most elements in one actions block.
pub(crate) const MAX_ACTIONS_ELEMENTS: usize = 25;
/// Most elements in one context block.
pub(crate) const MAX_CONTEXT_ELEMENTS: usize = 10;
