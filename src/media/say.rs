//! `say`: a value read as Kazoo's (`FreeSWITCH`'s) say types make it
//! (`number`, `items`, `messages`, `name_spelled`, `current_date_time`,
//! `telephone_number`, `currency`, ...), composed as an English sentence
//! for the TTS to speak. Pure: the clock's reading comes in as `now`.
//!
//! The sentence is written in words ("ten oh five PM", "December seventh")
//! so that what the caller hears does not depend on how a speech engine
//! reads digits and colons. Numbers in words come from `num2words`.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use num2words::{Currency, Num2Words};

/// Longest text a `say` reads (characters).
pub const MAX_TEXT: usize = 256;

/// Numbers with more digits than this are read digit by digit.
const MAX_PRONOUNCED_DIGITS: usize = 15;

/// The say types known, as Kazoo passes them.
pub const KINDS: &[&str] = &[
    "number",
    "items",
    "persons",
    "messages",
    "currency",
    "time_measurement",
    "current_date",
    "current_time",
    "current_date_time",
    "short_date_time",
    "telephone_number",
    "telephone_extension",
    "url",
    "ip_address",
    "e-mail_address",
    "postal_address",
    "account_number",
    "name_spelled",
    "name_phonetic",
    "digits",
    "letters",
];

/// A value that cannot be said as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SayError {
    #[error("say: nothing to say")]
    Empty,
    #[error("say: {len} characters is longer than the {MAX_TEXT} a say reads")]
    TooLong { len: usize },
    #[error("say: unknown type {kind:?} (known: {})", KINDS.join(", "))]
    UnknownKind { kind: String },
    #[error("say: unknown method {method:?} (pronounced, iterated or counted)")]
    UnknownMethod { method: String },
    #[error("say {kind}: {text:?} {problem}")]
    Value {
        kind: String,
        text: String,
        problem: String,
    },
}

/// How a number is read: `FreeSWITCH`'s say methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    /// "one hundred twenty-three"
    Pronounced,
    /// "one two three"
    Iterated,
    /// "one hundred twenty-third"
    Counted,
}

impl Method {
    fn parse(method: Option<&str>) -> Result<Self, SayError> {
        match method.map(str::to_ascii_lowercase).as_deref() {
            None | Some("" | "none" | "n/a" | "pronounced") => Ok(Self::Pronounced),
            Some("iterated") => Ok(Self::Iterated),
            Some("counted") => Ok(Self::Counted),
            Some(other) => Err(SayError::UnknownMethod {
                method: other.to_owned(),
            }),
        }
    }
}

/// The English sentence that says `text` as `kind`, read with `method`
/// (`pronounced` when `None`). Dates and times are Unix seconds (already
/// shifted to the caller's local time, as Kazoo passes them) read as UTC;
/// an empty one is `now`.
pub fn sentence(
    text: &str,
    kind: &str,
    method: Option<&str>,
    now: Timestamp,
) -> Result<String, SayError> {
    let len = text.chars().count();
    if len > MAX_TEXT {
        return Err(SayError::TooLong { len });
    }
    let text = text.trim();
    let kind = kind.trim().to_ascii_lowercase();
    let method = Method::parse(method)?;
    let bad = |problem: &str| SayError::Value {
        kind: kind.clone(),
        text: text.to_owned(),
        problem: problem.to_owned(),
    };
    let dated = matches!(
        kind.as_str(),
        "current_date" | "current_time" | "current_date_time" | "short_date_time"
    );
    if text.is_empty() && !dated {
        return Err(SayError::Empty);
    }
    let said = match kind.as_str() {
        "number" | "items" | "persons" | "messages" => number(text, method)
            .ok_or_else(|| bad("is not a number (digits, an optional sign and decimal point)"))?,
        "currency" => currency(text).ok_or_else(|| bad("is not an amount of money"))?,
        "time_measurement" => duration(text)
            .ok_or_else(|| bad("is not a duration (seconds, or hours:minutes:seconds)"))?,
        "current_date" | "current_time" | "current_date_time" | "short_date_time" => {
            let at = instant(text, now).ok_or_else(|| bad("is not a time in Unix seconds"))?;
            dated_sentence(&kind, at, civil(now))
        }
        "telephone_number" => telephone_number(text),
        "ip_address" => ip_address(text).unwrap_or_else(|| spelled(text)),
        "url" | "e-mail_address" | "email_address" => address(text),
        "postal_address" => text.to_owned(),
        "telephone_extension" | "account_number" | "name_spelled" | "digits" | "letters" => {
            spelled(text)
        }
        "name_phonetic" => phonetic(text),
        _ => return Err(SayError::UnknownKind { kind }),
    };
    if said.trim().is_empty() {
        return Err(bad("has nothing that can be said"));
    }
    Ok(said)
}

// ---------------------------------------------------------------------------
// Numbers

/// A number as written (`-1,234.5`): its sign, integer digits (no
/// separators) and fraction digits.
fn parse_number(text: &str) -> Option<(bool, String, String)> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = rest.split_once('.').unwrap_or((rest, ""));
    let whole: String = whole.chars().filter(|c| *c != ',').collect();
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let valid = !whole.is_empty() && digits(&whole) && digits(fraction);
    valid.then(|| (negative, whole, fraction.to_owned()))
}

fn number(text: &str, method: Method) -> Option<String> {
    let (negative, whole, fraction) = parse_number(text)?;
    let sign = if negative { "minus " } else { "" };
    let point = if fraction.is_empty() {
        String::new()
    } else {
        format!(" point {}", digits_spoken(&fraction))
    };
    let pronounced = whole.trim_start_matches('0').len() <= MAX_PRONOUNCED_DIGITS;
    Some(match method {
        Method::Counted if pronounced && !negative && fraction.is_empty() => {
            words(&whole, Num2Words::ordinal)?
        }
        Method::Pronounced | Method::Counted if pronounced => {
            format!("{sign}{}{point}", words(&whole, Num2Words::cardinal)?)
        }
        _ => format!("{sign}{}{point}", digits_spoken(&whole)),
    })
}

/// `digits` (ASCII digits only) in words, made by `how`.
fn words(digits: &str, how: fn(Num2Words) -> Num2Words) -> Option<String> {
    how(Num2Words::parse(digits)?).to_words().ok()
}

fn cardinal(n: i64) -> String {
    Num2Words::new(n)
        .cardinal()
        .to_words()
        .unwrap_or_else(|_| n.to_string())
}

fn ordinal(n: i64) -> String {
    Num2Words::new(n)
        .ordinal()
        .to_words()
        .unwrap_or_else(|_| n.to_string())
}

/// `$12.50`, `12.50`, `EUR 3`, `£4`: dollars unless a symbol or ISO code
/// says otherwise.
fn currency(text: &str) -> Option<String> {
    let symbols = [
        ("$", Currency::DOLLAR),
        ("€", Currency::EUR),
        ("£", Currency::GBP),
    ];
    let mut amount = text.trim();
    let mut money = Currency::DOLLAR;
    for (symbol, which) in symbols {
        if let Some(rest) = amount.strip_prefix(symbol) {
            amount = rest.trim();
            money = which;
        }
    }
    if let Some((code, rest)) = amount.split_once(' ')
        && let Ok(which) = code.parse::<Currency>()
    {
        amount = rest.trim();
        money = which;
    }
    let (negative, whole, fraction) = parse_number(amount)?;
    if fraction.len() > 2 || whole.len() > MAX_PRONOUNCED_DIGITS {
        return None;
    }
    let value = format!("{whole}.{fraction:0<2}");
    let said = Num2Words::parse(&value)?.currency(money).to_words().ok()?;
    Some(if negative {
        format!("minus {said}")
    } else {
        said
    })
}

/// Seconds, or `h:m:s` / `m:s`, as "one hour, two minutes and three
/// seconds".
fn duration(text: &str) -> Option<String> {
    let parts: Vec<u64> = text
        .split(':')
        .map(|p| p.trim().parse::<u64>().ok())
        .collect::<Option<_>>()?;
    let seconds = match parts.as_slice() {
        [s] => *s,
        [m, s] => m.checked_mul(60)?.checked_add(*s)?,
        [h, m, s] => h
            .checked_mul(3600)?
            .checked_add(m.checked_mul(60)?)?
            .checked_add(*s)?,
        _ => return None,
    };
    if seconds > 100 * 365 * 86_400 {
        return None;
    }
    let units = [
        (seconds / 3600, "hour"),
        (seconds / 60 % 60, "minute"),
        (seconds % 60, "second"),
    ];
    let said: Vec<String> = units
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|&(n, unit)| {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            format!("{} {unit}{}", cardinal(n), if n == 1 { "" } else { "s" })
        })
        .collect();
    Some(match said.as_slice() {
        [] => "zero seconds".to_owned(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    })
}

// ---------------------------------------------------------------------------
// Dates and times

/// Unix seconds (empty: `now`) as a UTC civil time.
fn instant(text: &str, now: Timestamp) -> Option<DateTime> {
    if text.is_empty() {
        return Some(civil(now));
    }
    let seconds: i64 = text.parse().ok()?;
    Some(civil(Timestamp::from_second(seconds).ok()?))
}

fn civil(at: Timestamp) -> DateTime {
    TimeZone::UTC.to_datetime(at)
}

fn dated_sentence(kind: &str, at: DateTime, now: DateTime) -> String {
    match kind {
        "current_date" => full_date(at.date()),
        "current_time" => time(at),
        "short_date_time" => short_date_time(at, now),
        _ => format!("{}, at {}", full_date(at.date()), time(at)),
    }
}

/// "Monday, December seventh, twenty twenty-six".
fn full_date(date: Date) -> String {
    format!(
        "{}, {}, {}",
        date.strftime("%A"),
        month_day(date),
        year(date.year())
    )
}

/// "December seventh".
fn month_day(date: Date) -> String {
    format!("{} {}", date.strftime("%B"), ordinal(i64::from(date.day())))
}

fn year(year: i16) -> String {
    Num2Words::new(i64::from(year))
        .year()
        .to_words()
        .unwrap_or_else(|_| year.to_string())
}

/// "ten oh five AM", "twelve PM", "seven forty-five PM".
fn time(at: DateTime) -> String {
    let hour = at.hour();
    let twelve = match hour % 12 {
        0 => 12,
        h => h,
    };
    let minutes = match at.minute() {
        0 => String::new(),
        m @ 1..=9 => format!(" oh {}", cardinal(i64::from(m))),
        m => format!(" {}", cardinal(i64::from(m))),
    };
    let half = if hour < 12 { "AM" } else { "PM" };
    format!("{}{minutes} {half}", cardinal(i64::from(twelve)))
}

/// As `FreeSWITCH`'s short form: the time alone today, the weekday within
/// the past week, the month and day within the year, else the full date.
fn short_date_time(at: DateTime, now: DateTime) -> String {
    let days = (now.date() - at.date()).get_days();
    let time = time(at);
    if days == 0 {
        time
    } else if (1..7).contains(&days) {
        format!("{} at {time}", at.date().strftime("%A"))
    } else if at.year() == now.year() {
        format!("{} at {time}", month_day(at.date()))
    } else {
        format!("{}, at {time}", full_date(at.date()))
    }
}

// ---------------------------------------------------------------------------
// Digits, letters and addresses

fn digit_word(c: char) -> Option<&'static str> {
    const DIGITS: [&str; 10] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ];
    c.to_digit(10).map(|d| DIGITS[d as usize])
}

/// The name of a symbol, as a caller would say it.
fn symbol_word(c: char) -> Option<&'static str> {
    Some(match c {
        '*' => "star",
        '#' => "pound",
        '.' => "dot",
        '@' => "at",
        '-' => "dash",
        '/' => "slash",
        '_' => "underscore",
        '+' => "plus",
        ':' => "colon",
        '&' => "ampersand",
        '=' => "equals",
        '?' => "question mark",
        '%' => "percent",
        '$' => "dollar",
        _ => return None,
    })
}

/// Each character on its own: letters by name, digits and symbols in
/// words ("A, one, star"); spaces and unknown symbols skipped.
fn spelled(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            c if c.is_alphabetic() => Some(c.to_uppercase().collect::<String>()),
            c => digit_word(c).or_else(|| symbol_word(c)).map(str::to_owned),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Digits one by one ("four one five"), symbols by name; anything else
/// is skipped.
fn digits_spoken(text: &str) -> String {
    text.chars()
        .filter_map(|c| {
            digit_word(c)
                .map(str::to_owned)
                .or_else(|| symbol_word(c).map(str::to_owned))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Letters by the NATO alphabet, digits in words.
fn phonetic(text: &str) -> String {
    const NATO: [&str; 26] = [
        "Alfa", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel", "India",
        "Juliett", "Kilo", "Lima", "Mike", "November", "Oscar", "Papa", "Quebec", "Romeo",
        "Sierra", "Tango", "Uniform", "Victor", "Whiskey", "X-ray", "Yankee", "Zulu",
    ];
    text.chars()
        .filter_map(|c| {
            let upper = c.to_ascii_uppercase();
            if upper.is_ascii_uppercase() {
                Some(NATO[usize::from(upper as u8 - b'A')].to_owned())
            } else {
                digit_word(c).or_else(|| symbol_word(c)).map(str::to_owned)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// North American numbers in groups ("four one five, eight eight six, seven
/// nine zero zero"); others digit by digit.
fn telephone_number(text: &str) -> String {
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    let groups: Vec<&str> = match digits.len() {
        10 => vec![&digits[..3], &digits[3..6], &digits[6..]],
        11 if digits.starts_with('1') => {
            vec![&digits[..1], &digits[1..4], &digits[4..7], &digits[7..]]
        }
        _ => vec![digits.as_str()],
    };
    if digits.is_empty() {
        return spelled(text);
    }
    groups
        .iter()
        .map(|g| digits_spoken(g))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `192.168.0.1` as "one hundred ninety-two dot one hundred sixty-eight
/// dot zero dot one"; `None` when not an IPv4 address.
fn ip_address(text: &str) -> Option<String> {
    let ip: std::net::Ipv4Addr = text.parse().ok()?;
    Some(
        ip.octets()
            .iter()
            .map(|o| cardinal(i64::from(*o)))
            .collect::<Vec<_>>()
            .join(" dot "),
    )
}

/// URLs and e-mail addresses: words as words, digits one by one, symbols
/// by name ("sales at example dot com").
fn address(text: &str) -> String {
    let mut said: Vec<String> = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphabetic() {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            said.push(std::mem::take(&mut word));
        }
        if let Some(w) = digit_word(c).or_else(|| symbol_word(c)) {
            said.push(w.to_owned());
        }
    }
    if !word.is_empty() {
        said.push(word);
    }
    said.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07 10:05:00 UTC, a Monday.
    const MONDAY: i64 = 1_796_637_900;

    fn now() -> Timestamp {
        Timestamp::from_second(MONDAY).unwrap()
    }

    /// Text, type, method, and the sentence said.
    const CASES: &[(&str, &str, Option<&str>, &str)] = &[
        ("42", "number", None, "forty-two"),
        (
            "1234",
            "number",
            Some("pronounced"),
            "one thousand two hundred and thirty-four",
        ),
        ("1,000,000", "items", None, "one million"),
        ("-7", "number", None, "minus seven"),
        ("3.14", "number", None, "three point one four"),
        ("0", "messages", None, "zero"),
        ("1", "messages", None, "one"),
        ("123", "number", Some("iterated"), "one two three"),
        (
            "-1.05",
            "number",
            Some("iterated"),
            "minus one point zero five",
        ),
        ("1.5", "number", Some("counted"), "one point five"),
        ("21", "number", Some("counted"), "twenty-first"),
        ("2", "persons", Some("COUNTED"), "second"),
        (
            "12345678901234567890",
            "number",
            None,
            "one two three four five six seven eight nine zero one two three four five six seven eight nine zero",
        ),
        ("12.50", "currency", None, "twelve dollars and fifty cents"),
        ("$1.01", "currency", None, "one dollar and one cent"),
        ("7", "currency", None, "seven dollars"),
        ("EUR 3.5", "currency", None, "three euros and fifty cents"),
        (
            "3723",
            "time_measurement",
            None,
            "one hour, two minutes and three seconds",
        ),
        (
            "1:00:05",
            "time_measurement",
            None,
            "one hour and five seconds",
        ),
        (
            "2:30",
            "time_measurement",
            None,
            "two minutes and thirty seconds",
        ),
        ("0", "time_measurement", None, "zero seconds"),
        (
            "1796637900",
            "current_date",
            None,
            "Monday, December seventh, twenty twenty-six",
        ),
        ("1796637900", "current_time", None, "ten oh five AM"),
        (
            "1796637900",
            "current_date_time",
            None,
            "Monday, December seventh, twenty twenty-six, at ten oh five AM",
        ),
        ("", "current_time", None, "ten oh five AM"),
        ("1796601600", "current_time", None, "twelve AM"),
        ("1796646000", "current_time", None, "twelve twenty PM"),
        ("1796676300", "current_time", None, "eight forty-five PM"),
        ("1796630400", "short_date_time", None, "eight AM"),
        ("1796461200", "short_date_time", None, "Saturday at nine AM"),
        (
            "1794042000",
            "short_date_time",
            None,
            "November seventh at nine AM",
        ),
        (
            "1736240400",
            "short_date_time",
            None,
            "Tuesday, January seventh, twenty twenty-five, at nine AM",
        ),
        (
            "+1 (415) 886-7900",
            "telephone_number",
            None,
            "one, four one five, eight eight six, seven nine zero zero",
        ),
        (
            "4158867900",
            "telephone_number",
            None,
            "four one five, eight eight six, seven nine zero zero",
        ),
        (
            "+44 20 7946 0000",
            "telephone_number",
            None,
            "four four two zero seven nine four six zero zero zero zero",
        ),
        ("2101", "telephone_extension", None, "two, one, zero, one"),
        (
            "Bob 7*",
            "name_spelled",
            Some("pronounced"),
            "B, O, B, seven, star",
        ),
        ("ab", "letters", None, "A, B"),
        ("0042#", "digits", None, "zero, zero, four, two, pound"),
        ("AC-12", "account_number", None, "A, C, dash, one, two"),
        ("Kaz9", "name_phonetic", None, "Kilo, Alfa, Zulu, nine"),
        (
            "192.168.0.1",
            "ip_address",
            None,
            "one hundred ninety-two dot one hundred sixty-eight dot zero dot one",
        ),
        (
            "fe80::1",
            "ip_address",
            None,
            "F, E, eight, zero, colon, colon, one",
        ),
        (
            "sales@example.com",
            "e-mail_address",
            None,
            "sales at example dot com",
        ),
        (
            "https://acme.io/x2",
            "url",
            None,
            "https colon slash slash acme dot io slash x two",
        ),
        ("1 Main St", "postal_address", None, "1 Main St"),
    ];

    #[test]
    fn sentences() {
        for (text, kind, method, expected) in CASES {
            assert_eq!(
                sentence(text, kind, *method, now()).as_deref(),
                Ok(*expected),
                "{kind} {method:?} {text:?}"
            );
        }
    }

    #[test]
    fn what_cannot_be_said() {
        let err = |text: &str, kind: &str, method: Option<&str>| {
            sentence(text, kind, method, now()).unwrap_err()
        };
        assert_eq!(err("", "number", None), SayError::Empty);
        assert_eq!(err("  ", "name_spelled", None), SayError::Empty);
        assert!(matches!(err("12a", "number", None), SayError::Value { .. }));
        assert!(matches!(
            err("1.2.3", "number", None),
            SayError::Value { .. }
        ));
        assert!(matches!(err("-", "number", None), SayError::Value { .. }));
        assert!(matches!(
            err("1.234", "currency", None),
            SayError::Value { .. }
        ));
        assert!(matches!(
            err("soon", "current_date", None),
            SayError::Value { .. }
        ));
        assert!(matches!(
            err("99999999999999999", "current_date", None),
            SayError::Value { .. }
        ));
        assert!(matches!(
            err("1:2:3:4", "time_measurement", None),
            SayError::Value { .. }
        ));
        assert!(matches!(
            err("!!", "name_spelled", None),
            SayError::Value { .. }
        ));
        assert!(matches!(
            err("1", "weather", None),
            SayError::UnknownKind { .. }
        ));
        assert!(matches!(
            err("1", "number", Some("sung")),
            SayError::UnknownMethod { .. }
        ));
        let long = "1".repeat(MAX_TEXT + 1);
        assert!(matches!(
            err(&long, "digits", None),
            SayError::TooLong { .. }
        ));
        let message = err("12a", "number", None).to_string();
        assert!(
            message.contains("\"12a\"") && message.contains("number"),
            "{message}"
        );
    }
}
