//! Kazoo's system prompts (`vm-enter_pass`, `menu-invalid_entry`, ...): what
//! each one says in English, and which recordings of Debian's
//! `asterisk-core-sounds-en-wav` say the same thing. Pure: the library
//! ([`super::library`]) looks for the files and speaks the text when a file
//! is missing.
//!
//! The texts follow the meaning of Kazoo's English prompt list (its
//! `kazoo-sounds` repository, `kazoo-core/en/us/prompts.txt`); menus that
//! name keys say the keys this project's modules use. A prompt is mapped onto
//! Asterisk's files only when they tell the caller the same thing (several
//! files play in order: `vm-new_message` is "new" + "message"); the others
//! are spoken from their text.

/// One of Kazoo's system prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prompt {
    /// Kazoo's name.
    pub name: &'static str,
    /// Files of Asterisk's English prompt set (without `.wav`) that say the
    /// same, played in order; empty when none does.
    pub asterisk: &'static [&'static str],
    /// What it says, in English.
    pub text: &'static str,
}

const fn prompt(
    name: &'static str,
    asterisk: &'static [&'static str],
    text: &'static str,
) -> Prompt {
    Prompt {
        name,
        asterisk,
        text,
    }
}

/// Every known prompt, sorted by name (a test checks) for binary search.
pub const PROMPTS: &[Prompt] = &[
    prompt(
        "agent-already_logged_in",
        &[],
        "You are already logged in to the queue.",
    ),
    prompt(
        "agent-invalid_choice",
        &[],
        "That action cannot be performed.",
    ),
    prompt(
        "agent-logged_in",
        &["agent-loginok"],
        "You are now logged in to the queue.",
    ),
    prompt(
        "agent-logged_out",
        &["agent-loggedoff"],
        "You are now logged out of the queue.",
    ),
    prompt(
        "agent-not_call_center_agent",
        &[],
        "You are not set up as a call center agent. Please ask your system administrator for help.",
    ),
    prompt("agent-pause", &[], "Pausing."),
    prompt("agent-resume", &[], "Resuming."),
    prompt("camper-deny", &[], "Your request is denied."),
    prompt("camper-queue", &[], "Your request is accepted."),
    prompt(
        "cf-disabled",
        &["call-forwarding", "de-activated"],
        "Call forwarding is now off.",
    ),
    prompt(
        "cf-disabled_menu",
        &[],
        "To turn call forwarding on, press one. To change the number, press two.",
    ),
    prompt(
        "cf-enabled_menu",
        &[],
        "To turn call forwarding off, press one. To change the number, press two.",
    ),
    prompt(
        "cf-enter_number",
        &[],
        "Enter the number to forward your calls to, then press pound.",
    ),
    prompt(
        "cf-move-no_channel",
        &[],
        "No call was found for the user of this device.",
    ),
    prompt("cf-move-no_owner", &[], "This call has no owner."),
    prompt(
        "cf-move-too_many_channels",
        &[],
        "The user of this device is on more than one call. This feature works with a single call only.",
    ),
    prompt(
        "cf-not_available",
        &["feature-not-avail-line"],
        "Call forwarding is not available on this line.",
    ),
    prompt(
        "cf-now_forwarded_to",
        &[],
        "Your calls are now forwarded to",
    ),
    prompt(
        "cf-unauthorized_call",
        &[],
        "You are not allowed to call this kind of number.",
    ),
    prompt(
        "conf-alone",
        &["conf-onlyperson"],
        "You are the only person in this conference.",
    ),
    prompt(
        "conf-announce_your_name",
        &["priv-recordintro"],
        "At the tone, please say your name, then press any key or stop talking.",
    ),
    prompt(
        "conf-bad_conf",
        &["conf-invalid"],
        "That is not a valid conference number.",
    ),
    prompt(
        "conf-bad_pin",
        &["conf-invalidpin"],
        "That pin is not valid.",
    ),
    prompt(
        "conf-deaf",
        &[],
        "Your speaker is muted. Dial star four to unmute it.",
    ),
    prompt(
        "conf-enter_conf_number",
        &["conf-getconfno"],
        "Please enter the conference number, then press pound.",
    ),
    prompt(
        "conf-enter_conf_pin",
        &["conf-getpin"],
        "Please enter your pin, then press pound.",
    ),
    prompt(
        "conf-joining_conference",
        &["conf-placeintoconf"],
        "You are joining the conference now.",
    ),
    prompt(
        "conf-max_participants",
        &["conf-full"],
        "This conference is full. Please try again later.",
    ),
    prompt(
        "conf-muted",
        &[],
        "Your microphone is muted. Dial star one to unmute it.",
    ),
    prompt(
        "conf-other_participants",
        &["conf-otherinparty"],
        "other participants in this conference.",
    ),
    prompt(
        "conf-review",
        &[],
        "To keep this recording, press one. To record it again, press any other key.",
    ),
    prompt(
        "conf-single",
        &["conf-onlyone"],
        "There is one other participant in this conference.",
    ),
    prompt("conf-there_are", &["conf-thereare"], "There are"),
    prompt(
        "conf-too_many_attempts",
        &[],
        "I'm sorry, there have been too many attempts to join the conference.",
    ),
    prompt(
        "conf-undeaf",
        &[],
        "Your speaker is on again. Dial star four to mute it.",
    ),
    prompt(
        "conf-unmuted",
        &[],
        "Your microphone is on again. Dial star one to mute it.",
    ),
    prompt("conf-welcome", &[], "Welcome to the conference."),
    prompt("conf-your_announcment", &[], "You will be announced as"),
    prompt(
        "cw-activated",
        &["call-waiting", "activated"],
        "Call waiting is now on: new calls reach you while you are on a call.",
    ),
    prompt(
        "cw-deactivated",
        &["call-waiting", "de-activated"],
        "Call waiting is now off: new calls do not reach you while you are on a call.",
    ),
    prompt(
        "cw-not_available",
        &["feature-not-avail-line"],
        "Call waiting is not available on this line.",
    ),
    prompt(
        "dir-confirm_menu",
        &[],
        "Press one. To start over, press three.",
    ),
    prompt(
        "dir-enter_person",
        &[],
        "Please enter the first few letters of the person's name.",
    ),
    prompt(
        "dir-enter_person_firstname",
        &[],
        "Please enter the first few letters of the person's first name.",
    ),
    prompt(
        "dir-enter_person_lastname",
        &[],
        "Please enter the first few letters of the person's last name.",
    ),
    prompt(
        "dir-enter_person_name",
        &[],
        "Please enter the first few letters of the person's first or last name.",
    ),
    prompt("dir-first_name", &[], "first name"),
    prompt("dir-found", &[], "One match was found."),
    prompt("dir-invalid_key", &[], "That key is not valid."),
    prompt("dir-last_name", &[], "last name"),
    prompt(
        "dir-letters_of_person_name",
        &[],
        "letters of the person's name.",
    ),
    prompt(
        "dir-no_more_results",
        &["dir-nomore"],
        "There are no more matches.",
    ),
    prompt(
        "dir-no_results_found",
        &["dir-nomatch"],
        "No match was found.",
    ),
    prompt(
        "dir-result_menu",
        &[],
        "Press one. For the next match, press two. To start over, press three.",
    ),
    prompt("dir-result_number", &[], "to call"),
    prompt(
        "dir-specify_minimum",
        &[],
        "Please enter at least two digits.",
    ),
    prompt(
        "disa-enter_pin",
        &[],
        "Please enter your system access pin, then press pound.",
    ),
    prompt(
        "disa-invalid_extension",
        &["pbx-invalid"],
        "That extension was not found. Please try again.",
    ),
    prompt("disa-invalid_pin", &[], "That pin is not valid."),
    prompt(
        "disa-retries_exceeded",
        &[],
        "I'm sorry, there have been too many attempts with a wrong pin. Goodbye.",
    ),
    prompt(
        "dnd-activated",
        &["do-not-disturb", "activated"],
        "Do not disturb is now on. No calls reach you, forwarded calls included, until you turn it off.",
    ),
    prompt(
        "dnd-deactivated",
        &["do-not-disturb", "de-activated"],
        "Do not disturb is now off. Calls reach you again, forwarded calls included.",
    ),
    prompt(
        "dnd-not_available",
        &["feature-not-avail-line"],
        "Do not disturb is not available on this phone.",
    ),
    prompt(
        "dynamic-cid-enter_cid",
        &[],
        "Enter the caller ID to use, then press pound.",
    ),
    prompt(
        "dynamic-cid-invalid_using_default",
        &[],
        "That entry is not valid. This call will use your usual caller ID.",
    ),
    prompt(
        "eavesdrop-no_channels",
        &[],
        "There is no call to listen to.",
    ),
    prompt(
        "external-number-description",
        &[],
        "as the caller ID of calls that may come from another phone. If you did not ask for this, or do not want your number used this way, do not share the authorization code that follows.",
    ),
    prompt(
        "external-number-ivr_verification",
        &[],
        "as the caller ID of calls that may come from another phone. If you did not ask for this, or do not want your number used this way, hang up now. To allow it, press one.",
    ),
    prompt(
        "external-number-request_for",
        &[],
        "Someone asked to use the phone number",
    ),
    prompt(
        "fault-can_not_be_completed_as_dialed",
        &["cannot-complete-as-dialed", "check-number-dial-again"],
        "Your call cannot be completed as dialed. Please check the number and dial again.",
    ),
    prompt(
        "fault-can_not_be_completed_at_this_time",
        &["all-circuits-busy-now", "please-try-call-later"],
        "Your call cannot be completed at this time. Please try again later.",
    ),
    prompt(
        "fault-facility_trouble",
        &[],
        "Because of trouble on the telephone network, your call cannot be completed at this time. Please try again later.",
    ),
    prompt(
        "fault-too_many_invalid_entries",
        &[],
        "I'm sorry, there have been too many invalid entries. Goodbye.",
    ),
    prompt("general-again", &[], "again"),
    prompt("general-and", &["vm-and"], "and"),
    prompt(
        "general-authorization_code",
        &[],
        "The authorization code is",
    ),
    prompt("general-goodbye", &["goodbye"], "Goodbye."),
    prompt("general-hello", &["hello"], "Hello."),
    prompt("general-once_more", &[], "once more"),
    prompt("general-thank_you", &["auth-thankyou"], "Thank you."),
    prompt("hotdesk-abort", &[], "Sorry, please try again later."),
    prompt(
        "hotdesk-disabled",
        &[],
        "Your hot desk profile is turned off. Please contact your system administrator.",
    ),
    prompt("hotdesk-enter_id", &[], "Please enter your hot desk ID."),
    prompt(
        "hotdesk-enter_pin",
        &["agent-pass"],
        "Please enter your hot desk pin, then press pound.",
    ),
    prompt(
        "hotdesk-invalid_entry",
        &["pm-invalid-option"],
        "That entry is not valid.",
    ),
    prompt("hotdesk-logged_in", &[], "Your calls now ring this device."),
    prompt(
        "hotdesk-logged_out",
        &[],
        "Your calls no longer ring this device.",
    ),
    prompt(
        "intercept-no_channels",
        &[],
        "There is no call to intercept.",
    ),
    prompt("intercept-no_users", &[], "No users were found."),
    prompt(
        "ivr-group_confirm",
        &[],
        "This is a forwarded call. To take it, press one; to ignore it, hang up.",
    ),
    prompt(
        "menu-exit",
        &["sorry-youre-having-problems"],
        "I'm sorry, we could not recognize your entries.",
    ),
    prompt(
        "menu-invalid_entry",
        &["pm-invalid-option"],
        "That entry is not valid.",
    ),
    prompt(
        "menu-no_prompt",
        &[],
        "The greeting of this menu has not been recorded yet. If you know the pin, dial it now to record it. Otherwise, please call again later. Thank you.",
    ),
    prompt("menu-return", &[], "Taking you back to the menu."),
    prompt(
        "menu-transferring_call",
        &["pls-hold-while-try"],
        "Transferring your call.",
    ),
    prompt(
        "park-already_in_use",
        &[],
        "This parking spot is taken. Please choose another spot number.",
    ),
    prompt(
        "park-call_placed_in_spot",
        &[],
        "The call is parked in spot",
    ),
    prompt(
        "park-no_caller",
        &["pbx-invalidpark"],
        "No call is parked here. It may have been picked up by someone else, or the caller hung up.",
    ),
    prompt("pickup-no_channels", &[], "There is no call to pick up."),
    prompt("pickup-no_users", &[], "No users were found in this group."),
    prompt("queue-about_10_minutes", &[], "About ten minutes."),
    prompt("queue-about_15_minutes", &[], "About fifteen minutes."),
    prompt("queue-about_1_hour", &[], "About one hour."),
    prompt("queue-about_30_minutes", &[], "About thirty minutes."),
    prompt("queue-about_45_minutes", &[], "About forty-five minutes."),
    prompt("queue-about_5_minutes", &[], "About five minutes."),
    prompt("queue-in_the_queue", &[], "in the queue."),
    prompt(
        "queue-increase_in_call_volume",
        &[],
        "We are receiving more calls than usual.",
    ),
    prompt("queue-less_than_1_minute", &[], "Less than one minute."),
    prompt(
        "queue-the_estimated_wait_time_is",
        &["queue-holdtime"],
        "The estimated wait time is",
    ),
    prompt(
        "queue-you_are_at_position",
        &["queue-thereare"],
        "You are at position",
    ),
    prompt(
        "stepswitch-emergency_not_configured",
        &[],
        "The account you are calling from is not set up for emergency calls. Please ask your system administrator to set it up as soon as possible.",
    ),
    prompt(
        "temporal-marked_disabled",
        &[],
        "Your office is now marked closed. Calls are routed as if the office were closed until you resume normal operation.",
    ),
    prompt(
        "temporal-marked_enabled",
        &[],
        "Your office is now marked open. Calls are routed as if the office were open until you resume normal operation.",
    ),
    prompt(
        "temporal-marker_reset",
        &[],
        "Normal operation resumed: calls are routed by your schedule again.",
    ),
    prompt(
        "temporal-menu",
        &[],
        "Time based routing. To mark the office open, press one. To mark it closed, press two. To resume normal operation, press three.",
    ),
    prompt(
        "vm-abort",
        &[],
        "I'm sorry, there have been too many failed attempts to log in. Goodbye.",
    ),
    prompt("vm-deleted", &["vm-deleted"], "Deleted."),
    prompt(
        "vm-enter_forward_id",
        &[],
        "Please enter the number of the mailbox to forward to, then press pound.",
    ),
    prompt(
        "vm-enter_id",
        &[],
        "Please enter your mailbox number, then press pound.",
    ),
    prompt(
        "vm-enter_new_pin",
        &["vm-newpassword"],
        "Please enter your new password, then press pound.",
    ),
    prompt(
        "vm-enter_new_pin_confirm",
        &["vm-reenterpassword"],
        "Please enter your new password again, then press pound.",
    ),
    prompt(
        "vm-enter_pass",
        &["agent-pass"],
        "Please enter your password, then press pound.",
    ),
    prompt("vm-fail_auth", &["vm-incorrect"], "Login incorrect."),
    prompt(
        "vm-forward_abort",
        &[],
        "I'm sorry, there have been too many failed attempts to find the mailbox to forward to.",
    ),
    prompt("vm-goodbye", &["vm-goodbye"], "Goodbye."),
    prompt(
        "vm-greeting_intro",
        &[],
        "The person you are trying to reach is not available.",
    ),
    prompt(
        "vm-mailbox_full",
        &["vm-mailboxfull"],
        "This mailbox is full. Please call again later.",
    ),
    prompt(
        "vm-main_menu",
        &[],
        "To hear your new messages, press one. To hear your saved messages, press two. To change your settings, press five.",
    ),
    prompt(
        "vm-main_menu_not_configurable",
        &[],
        "To hear your new messages, press one. To hear your saved messages, press two.",
    ),
    prompt(
        "vm-message_forwarding",
        &[],
        "To add a message before it, press one. To forward it as it is, press two. To go back to your messages, press zero.",
    ),
    prompt(
        "vm-message_menu",
        &[],
        "To save this message, press one. To hear it again, press two. To forward it, press three. To delete it, press seven. To go back to the main menu, press zero.",
    ),
    prompt("vm-message_number", &["vm-message"], "Message"),
    prompt("vm-new_and", &["vm-INBOX", "vm-and"], "new and"),
    prompt("vm-new_message", &["vm-INBOX", "vm-message"], "new message"),
    prompt(
        "vm-new_messages",
        &["vm-INBOX", "vm-messages"],
        "new messages",
    ),
    prompt(
        "vm-no_access",
        &[],
        "I'm sorry, your mailbox cannot be reached from this phone.",
    ),
    prompt(
        "vm-no_messages",
        &["vm-youhave", "vm-no", "vm-messages"],
        "Your mailbox is empty.",
    ),
    prompt("vm-not_available", &["vm-isunavail"], "is not available."),
    prompt(
        "vm-not_available_no_voicemail",
        &["vm-nobodyavail", "please-try-call-later"],
        "The person you are calling is not available and has no voicemail. Please call again later.",
    ),
    prompt("vm-person", &["vm-theperson"], "The person at extension"),
    prompt(
        "vm-person_not_available",
        &[],
        "Please leave a message after the tone.",
    ),
    prompt(
        "vm-pin_invalid",
        &["vm-mismatch"],
        "I'm sorry, the passwords did not match or cannot be used. Please try again.",
    ),
    prompt(
        "vm-pin_set",
        &["vm-passchanged"],
        "Thank you. Your new password is saved.",
    ),
    prompt("vm-received", &["vm-received"], "Received"),
    prompt(
        "vm-record_greeting",
        &["vm-rec-unv"],
        "At the tone, please say your greeting, then press any key or stop talking.",
    ),
    prompt(
        "vm-record_message",
        &["vm-intro"],
        "Please leave your message at the tone. When you are done, press any key or stop talking.",
    ),
    prompt(
        "vm-record_name",
        &["vm-rec-name"],
        "At the tone, please say your name, then press any key or stop talking.",
    ),
    prompt(
        "vm-record_temp_greeting",
        &["vm-rec-temp"],
        "At the tone, please say your temporary greeting, then press any key or stop talking.",
    ),
    prompt(
        "vm-recording_saved",
        &["vm-msgsaved"],
        "Your recording is saved.",
    ),
    prompt(
        "vm-recording_to_short",
        &["vm-tooshort"],
        "The recording was too short to keep.",
    ),
    prompt(
        "vm-review_recording",
        &["vm-review"],
        "To keep this recording, press one. To listen to it, press two. To record it again, press three.",
    ),
    prompt("vm-saved", &["vm-saved"], "Saved."),
    prompt(
        "vm-saved_message",
        &["vm-saved", "vm-message"],
        "saved message",
    ),
    prompt(
        "vm-saved_messages",
        &["vm-saved", "vm-messages"],
        "saved messages",
    ),
    prompt(
        "vm-settings_menu",
        &[],
        "To record your greeting, press one. To record your name, press two. To change your password, press three. To record a temporary greeting, press four. To delete your temporary greeting, press five. To go back to the main menu, press zero.",
    ),
    prompt(
        "vm-setup_complete",
        &[],
        "Your mailbox is set up. To change these settings later, choose option five in the main menu.",
    ),
    prompt(
        "vm-setup_intro",
        &[],
        "Welcome to your new mailbox. Let's set it up, starting with your password.",
    ),
    prompt(
        "vm-setup_rec_greeting",
        &[],
        "Now record the greeting callers hear when they reach your mailbox.",
    ),
    prompt(
        "vm-thank_you",
        &["auth-thankyou", "vm-goodbye"],
        "Thank you for calling. Goodbye.",
    ),
    prompt("vm-you_have", &["vm-youhave"], "You have"),
];

/// Kazoo's families of prompt names: the part before the first `-`.
pub const FAMILIES: &[&str] = &[
    "agent",
    "camper",
    "cf",
    "conf",
    "cw",
    "dir",
    "disa",
    "dnd",
    "dynamic",
    "eavesdrop",
    "external",
    "fault",
    "general",
    "hotdesk",
    "intercept",
    "ivr",
    "menu",
    "park",
    "pickup",
    "queue",
    "stepswitch",
    "temporal",
    "vm",
];

/// The prompt of this name, if Kazoo has one.
pub fn lookup(name: &str) -> Option<&'static Prompt> {
    PROMPTS
        .binary_search_by(|p| p.name.cmp(name))
        .ok()
        .map(|i| &PROMPTS[i])
}

/// A name played, read as a prompt: its file name and, when the name
/// carries one, its language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptRef {
    pub name: String,
    pub language: Option<String>,
}

/// Reads the forms Kazoo writes a system prompt in: `vm-enter_pass`,
/// `system_media/vm-enter_pass`, `/system_media/en-us%2Fvm-enter_pass`
/// (the language before the name) and
/// `prompt://system_media/vm-enter_pass/en-us` (after it). `None` when what
/// is left is not a safe file name (letters, digits, `_`, `-`, `.`, not
/// starting with a dot).
pub fn parse(played: &str) -> Option<PromptRef> {
    let rest = played.strip_prefix("prompt://").unwrap_or(played);
    let rest = rest.trim_start_matches('/');
    let rest = rest.strip_prefix("system_media/").unwrap_or(rest);
    // Kazoo URL-encodes the slash between the language and the name.
    let decoded = rest.replace("%2F", "/").replace("%2f", "/");
    let parts: Vec<&str> = decoded.split('/').collect();
    let (name, language) = match parts.as_slice() {
        [name] => (*name, None),
        [first, second] if is_language(first) => (*second, Some(*first)),
        [first, second] if is_language(second) => (*first, Some(*second)),
        _ => return None,
    };
    is_file_name(name).then(|| PromptRef {
        name: name.to_owned(),
        language: language.map(str::to_owned),
    })
}

/// `en`, `en-us`, `fr-CA`: a language tag as Kazoo writes them.
pub fn is_language(text: &str) -> bool {
    let mut parts = text.split('-');
    let lang = parts.next().unwrap_or("");
    let region = parts.next();
    parts.next().is_none()
        && lang.len() == 2
        && lang.chars().all(|c| c.is_ascii_alphabetic())
        && region.is_none_or(|r| r.len() == 2 && r.chars().all(|c| c.is_ascii_alphabetic()))
}

fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Whether `name` is written like Kazoo's prompt names (a known family, a
/// `-`, then lowercase letters, digits, `_` and `-`), though no table
/// entry has it.
pub fn looks_like_prompt(name: &str) -> bool {
    let Some((family, rest)) = name.split_once('-') else {
        return false;
    };
    FAMILIES.contains(&family)
        && !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
}

/// A prompt name as words to speak when its text is unknown:
/// `hotdesk-enter_pin` is "hotdesk enter pin".
pub fn readable(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    use super::*;

    #[test]
    fn the_table_is_sorted_unique_and_well_formed() {
        for pair in PROMPTS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} must come before {}",
                pair[0].name,
                pair[1].name
            );
        }
        for prompt in PROMPTS {
            assert!(looks_like_prompt(prompt.name), "{}", prompt.name);
            assert!(!prompt.text.trim().is_empty(), "{}", prompt.name);
            assert_eq!(lookup(prompt.name), Some(prompt));
        }
        assert_eq!(lookup("vm-nope"), None);
        assert_eq!(
            lookup("vm-enter_pass").map(|p| p.asterisk),
            Some(&["agent-pass"][..])
        );
    }

    #[test]
    fn prompt_references() {
        let read = |played: &str| parse(played).map(|r| (r.name, r.language));
        let plain = |name: &str| Some((name.to_owned(), None));
        let with = |name: &str, language: &str| Some((name.to_owned(), Some(language.to_owned())));
        assert_eq!(read("vm-enter_pass"), plain("vm-enter_pass"));
        assert_eq!(
            read("system_media/pickup-no_users"),
            plain("pickup-no_users")
        );
        assert_eq!(read("/system_media/vm-goodbye"), plain("vm-goodbye"));
        assert_eq!(
            read("/system_media/en-us%2Fvm-enter_pass"),
            with("vm-enter_pass", "en-us")
        );
        assert_eq!(
            read("/system_media/fr-CA%2fvm-goodbye"),
            with("vm-goodbye", "fr-CA")
        );
        assert_eq!(
            read("prompt://system_media/vm-person/en-us"),
            with("vm-person", "en-us")
        );
        assert_eq!(read("en/hello-world"), with("hello-world", "en"));
        for bad in [
            "",
            "../etc/passwd",
            "a/b/c",
            "vm-x/not a language",
            ".hidden",
            "x y",
            "system_media/",
            "a%2Fb%2Fc",
            "en-us%2F..",
            "caf\u{e9}%2",
        ] {
            assert_eq!(read(bad), None, "{bad}");
        }
    }

    #[test]
    fn prompt_looking_names() {
        assert!(looks_like_prompt("hotdesk-whatever_new"));
        assert!(looks_like_prompt("cf-move-no_owner"));
        for not in [
            "main-greeting",
            "vm-",
            "vm",
            "VM-goodbye",
            "vm-Goodbye",
            "hello-world",
        ] {
            assert!(!looks_like_prompt(not), "{not}");
        }
        assert_eq!(readable("hotdesk-enter_pin"), "hotdesk enter pin");
        assert_eq!(readable("cf-move--x_"), "cf move x");
    }

    fn lua_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                lua_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "lua") {
                out.push(path);
            }
        }
    }

    /// String literals of the Lua sources written like a prompt name
    /// (`family-rest`, lowercase), with `system_media/` removed.
    fn prompt_literals(source: &str) -> Vec<String> {
        let literal =
            regex::Regex::new(r#"["'](?:system_media/)?([a-z]+-[a-z0-9_-]+)["']"#).unwrap();
        literal
            .captures_iter(source)
            .map(|c| c[1].to_owned())
            .collect()
    }

    /// Literals of `scripts/` shaped like prompts that are not prompts.
    const NOT_PROMPTS: &[&str] = &[
        "ad-hoc",
        "content-type",
        "e-mail_address",
        "fr-ca",
        "one-way",
        "two-way",
    ];

    #[test]
    fn every_prompt_the_modules_play_is_in_the_table() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
        let mut files = Vec::new();
        lua_files(&root, &mut files);
        assert!(files.len() > 20, "{} Lua files under scripts/", files.len());
        let mut seen = BTreeSet::new();
        let mut missing = BTreeSet::new();
        for file in &files {
            let source = std::fs::read_to_string(file).unwrap();
            for literal in prompt_literals(&source) {
                if NOT_PROMPTS.contains(&literal.as_str()) {
                    continue;
                }
                if lookup(&literal).is_none() {
                    missing.insert(format!("{literal} ({})", file.display()));
                }
                seen.insert(literal);
            }
        }
        assert!(
            missing.is_empty(),
            "prompts played by scripts/ but not in src/media/prompts.rs (add them, or to NOT_PROMPTS if they are not prompts): {missing:?}"
        );
        // The scan must find what the modules are known to play.
        for known in [
            "vm-enter_pass",
            "menu-invalid_entry",
            "pickup-no_users",
            "cf-move-no_owner",
        ] {
            assert!(seen.contains(known), "{known} not found by the scan");
        }
        assert!(seen.len() > 70, "only {} prompt names found", seen.len());
    }

    /// Debian's `asterisk-core-sounds-en-wav`, when installed. Missing, a
    /// test skips what needs it, saying so, except under CI, which
    /// installs it: there it fails.
    pub(crate) fn installed_set() -> Option<&'static Path> {
        let dir = Path::new(crate::media::library::PROMPT_SETS[0]);
        if dir.is_dir() {
            return Some(dir);
        }
        let install = "apt-get install asterisk-core-sounds-en-wav";
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is missing: {install}",
            dir.display()
        );
        eprintln!("skipped: {} is missing ({install})", dir.display());
        None
    }

    #[test]
    fn every_mapped_asterisk_file_exists() {
        let Some(dir) = installed_set() else {
            return;
        };
        let missing: Vec<String> = PROMPTS
            .iter()
            .flat_map(|p| p.asterisk.iter().map(move |f| (p.name, *f)))
            .filter(|(_, file)| !dir.join(format!("{file}.wav")).is_file())
            .map(|(name, file)| format!("{name}: {file}.wav"))
            .collect();
        assert!(missing.is_empty(), "not in {}: {missing:?}", dir.display());
    }
}
