//! What Kazoo itself defines, for checks that need it before (or beside) the
//! module scripts: the names of its callflow modules and of its metaflow
//! (konami) modules.

/// Kazoo's callflow modules: the 74 of `applications/callflow/src/module/`
/// plus the 4 of `applications/acdc` (`kazoo-callflows.md` §3.0).
pub const KAZOO_MODULES: &[&str] = &[
    "acdc_agent",
    "acdc_member",
    "acdc_queue",
    "acdc_wait_time",
    "after_bridge",
    "answer",
    "audio_macro",
    "branch_bnumber",
    "branch_variable",
    "call_forward",
    "call_waiting",
    "callflow",
    "camping_feature",
    "check_cid",
    "cidlistmatch",
    "collect_dtmf",
    "conference",
    "conference_feature",
    "dead_air",
    "device",
    "directory",
    "disa",
    "do_not_disturb",
    "dynamic_cid",
    "eavesdrop",
    "eavesdrop_feature",
    "edr",
    "fax_detect",
    "faxbox",
    "flush_dtmf",
    "function",
    "group",
    "group_pickup",
    "group_pickup_feature",
    "hangup",
    "hotdesk",
    "intercept",
    "intercept_feature",
    "intercom",
    "language",
    "lookupcidname",
    "manual_presence",
    "menu",
    "missed_call_alert",
    "move",
    "nomorobo",
    "noop",
    "notification",
    "offnet",
    "page_group",
    "park",
    "pivot",
    "play",
    "prepend_cid",
    "privacy",
    "receive_fax",
    "record_call",
    "record_caller",
    "resources",
    "response",
    "ring_group",
    "ring_group_toggle",
    "route_to_cid",
    "send_dtmf",
    "set",
    "set_alert_info",
    "set_cid",
    "set_variable",
    "set_variables",
    "skel",
    "sleep",
    "temporal_route",
    "transfer",
    "tts",
    "user",
    "voicemail",
    "wait_for_hangup",
    "webhook",
];

/// Whether `name` is one of Kazoo's callflow modules.
pub fn is_kazoo_module(name: &str) -> bool {
    KAZOO_MODULES.binary_search(&name).is_ok()
}

/// Kazoo's metaflow modules: `applications/konami/src/module/konami_*.erl`
/// on master (`kazoo-callflows.md` §4).
pub const KAZOO_METAFLOWS: &[&str] = &[
    "audio_level",
    "break",
    "callflow",
    "hangup",
    "hold",
    "intercept",
    "move",
    "play",
    "record_call",
    "resume",
    "say",
    "transfer",
    "tts",
];

/// Whether `name` is one of Kazoo's metaflow modules.
pub fn is_kazoo_metaflow(name: &str) -> bool {
    KAZOO_METAFLOWS.binary_search(&name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_complete() {
        assert!(KAZOO_MODULES.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(KAZOO_MODULES.len(), 78);
        assert!(is_kazoo_module("menu"));
        assert!(!is_kazoo_module("say"));
        assert!(KAZOO_METAFLOWS.windows(2).all(|w| w[0] < w[1]));
        assert!(is_kazoo_metaflow("say") && !is_kazoo_metaflow("park"));
    }
}
