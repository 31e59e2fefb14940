//! Property tests: random input against the rules each piece promises. proptest shrinks a
//! failure to a small case and records it under `proptest-regressions/`.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeMap;

use chatdemo::config::CliOverrides;
use chatdemo::domain::MessageBody;
use chatdemo::linkify::linkify;
use chatdemo::Settings;
use proptest::prelude::*;

/// Text with the characters that matter here well represented: controls, line breaks,
/// bidi controls, zero-width characters, markup, quotes and the starts of URLs.
fn tricky_text() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        any::<char>().prop_map(String::from),
        Just("\r\n".to_owned()),
        Just("\r".to_owned()),
        Just("\u{202E}".to_owned()),
        Just("\u{2067}".to_owned()),
        Just("\u{200B}".to_owned()),
        Just("\u{FEFF}".to_owned()),
        Just("<script>".to_owned()),
        Just("\"'&".to_owned()),
        Just("http://".to_owned()),
        Just("https://a.b/".to_owned()),
        Just("www.".to_owned()),
        Just("javascript:".to_owned()),
        Just(" ".to_owned()),
        (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap().to_string()),
    ];
    proptest::collection::vec(pieces, 0..24).prop_map(|p| p.concat())
}

fn is_zero_width(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn a_cleaned_body_keeps_every_rule_and_cleaning_it_again_changes_nothing(
        raw in tricky_text(),
        max in 1usize..40,
    ) {
        let Ok(body) = MessageBody::parse(&raw, max) else {
            return Ok(());
        };
        let text = body.as_str();
        prop_assert!(!text.is_empty() && text.chars().count() <= max);
        prop_assert_eq!(text.trim(), text);
        prop_assert!(text.chars().all(|c| c == '\n' || c == '\t' || (c as u32) >= 0x20));
        prop_assert!(!text.contains('\r'));
        prop_assert!(!text.chars().any(is_bidi_control));
        let visible = text.chars().any(|c| !c.is_whitespace() && !is_zero_width(c));
        prop_assert!(visible, "nothing visible in {:?}", text);
        prop_assert_eq!(MessageBody::parse(text, max).unwrap(), body);
    }

    #[test]
    fn linkify_output_is_escaped_well_formed_and_links_only_http(text in tricky_text()) {
        let html = linkify(&text);
        // Take the links out: what is left is escaped text with no markup at all.
        let mut rest = String::new();
        let mut shown = String::new();
        let mut tail = html.as_str();
        while let Some(start) = tail.find("<a href=\"") {
            rest.push_str(&tail[..start]);
            shown.push_str(&tail[..start]);
            let after = &tail[start + "<a href=\"".len()..];
            let href_end = after.find('"').unwrap();
            let href = &after[..href_end];
            prop_assert!(href.starts_with("http://") || href.starts_with("https://"), "{}", href);
            let after = &after[href_end..];
            prop_assert!(after.starts_with("\" rel=\"nofollow noopener\">"));
            let after = &after["\" rel=\"nofollow noopener\">".len()..];
            let close = after.find("</a>").unwrap();
            let label = &after[..close];
            prop_assert!(!label.contains('<'));
            shown.push_str(label);
            tail = &after[close + "</a>".len()..];
        }
        rest.push_str(tail);
        shown.push_str(tail);
        for markup in ['<', '>', '"', '\''] {
            prop_assert!(!rest.contains(markup), "{:?} in {:?}", markup, html);
        }
        // Unescaped, what a reader sees is exactly the text.
        let seen = shown
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&");
        prop_assert_eq!(seen, text);
    }

    #[test]
    fn the_form_decoder_never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = chatdemo::form::decode::<BTreeMap<String, String>>(&bytes);
    }

    #[test]
    fn an_encoded_form_decodes_to_its_fields_with_the_last_value_winning(
        fields in proptest::collection::vec(("[a-c_]{1,2}", any::<String>()), 0..8),
    ) {
        let encoded = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&fields)
            .finish();
        let decoded: BTreeMap<String, String> = chatdemo::form::decode(encoded.as_bytes()).unwrap();
        let model: BTreeMap<String, String> = fields.into_iter().collect();
        prop_assert_eq!(decoded, model);
    }

    #[test]
    fn broken_percent_encoding_is_an_error_not_a_guess(
        prefix in "[a-z=&]{0,6}",
        bad in prop_oneof![Just("%"), Just("%4"), Just("%zz"), Just("%ff"), Just("%c3%28")],
    ) {
        let input = format!("{prefix}{bad}");
        prop_assert!(chatdemo::form::decode::<BTreeMap<String, String>>(input.as_bytes()).is_err());
    }
}

/// Every key of the shipped configuration, as `(section, key)`, with its default as TOML.
fn every_setting() -> Vec<(String, String, toml::Value)> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).unwrap();
    let table: toml::Table = text.parse().unwrap();
    table
        .iter()
        .flat_map(|(section, keys)| {
            keys.as_table()
                .unwrap()
                .iter()
                .map(|(key, value)| (section.clone(), key.clone(), value.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// What the README's settings table says a key accepts.
#[derive(Debug, Clone)]
enum Documented {
    /// `A–B`: a whole number in that range.
    Whole(u64, u64),
    /// `above 0, at most 1,000,000`.
    Rate,
    /// `true/false`.
    Flag,
    /// `` `a` or `b` ``: one of these words.
    OneOf(Vec<String>),
    /// Anything else (an address, a path, a URL): checked by the unit tests.
    Other,
}

impl Documented {
    fn parse(cell: &str) -> Self {
        let number = |t: &str| t.trim().replace(',', "").parse::<u64>().ok();
        if let Some((low, high)) = cell.split_once('–') {
            if let (Some(low), Some(high)) = (number(low), number(high)) {
                return Self::Whole(low, high);
            }
        }
        if cell == "above 0, at most 1,000,000" {
            return Self::Rate;
        }
        if cell == "true/false" {
            return Self::Flag;
        }
        let words: Vec<String> = cell
            .split(" or ")
            .map(|w| w.trim().trim_matches('`').to_owned())
            .collect();
        if words.len() > 1 && cell.split(" or ").all(|w| w.trim().starts_with('`')) {
            return Self::OneOf(words);
        }
        Self::Other
    }

    /// Whether `value`, given as an environment variable, is within the documented range.
    fn admits(&self, value: &str) -> Option<bool> {
        Some(match self {
            // `-0` is 0, as a number read from text.
            Self::Whole(low, high) => value
                .parse::<i128>()
                .is_ok_and(|n| (i128::from(*low)..=i128::from(*high)).contains(&n)),
            Self::Rate => value
                .parse::<f64>()
                .is_ok_and(|n| n.is_finite() && n > 0.0 && n <= 1_000_000.0),
            Self::Flag => ["true", "false", "1", "0", "yes", "no", "on", "off"]
                .iter()
                .any(|word| word.eq_ignore_ascii_case(value)),
            Self::OneOf(words) => words.iter().any(|w| w == value),
            Self::Other => return None,
        })
    }
}

/// The README's settings table: key -> (default cell, range cell).
fn readme_settings() -> BTreeMap<String, (String, String)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.strip_prefix("| `")?.split(" | ").collect();
            let key = cells.first()?.strip_suffix('`')?;
            (cells.len() >= 4 && key.contains('.')).then(|| {
                (
                    key.to_owned(),
                    (cells[1].trim().to_owned(), cells[2].trim().to_owned()),
                )
            })
        })
        .collect()
}

fn env_name(section: &str, key: &str) -> String {
    format!(
        "CHATDEMO_{}__{}",
        section.to_uppercase(),
        key.to_uppercase()
    )
}

fn load(env: &[(String, String)]) -> Result<Settings, chatdemo::config::ConfigError> {
    Settings::load_from(None, env.to_vec(), &CliOverrides::default())
}

/// Values of every kind and size a person (or a typo) could put in a setting.
fn any_setting_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
        (0u64..100_000).prop_map(|n| n.to_string()),
        (0u64..5000).prop_map(|n| format!("{}.5", n)),
        Just("999999999999999999999999".to_owned()),
        Just("-1".to_owned()),
        Just("0".to_owned()),
        Just("1e308".to_owned()),
        Just("NaN".to_owned()),
        Just("inf".to_owned()),
        Just("true".to_owned()),
        Just("on".to_owned()),
        Just("".to_owned()),
        Just("[\"x\"]".to_owned()),
        Just("127.0.0.1".to_owned()),
        Just("redis".to_owned()),
        Just("json".to_owned()),
        "\\PC{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    /// Any value for any key (several at once): the settings are refused with a key named,
    /// or they load, and then every value given is one the README's table admits for its key.
    #[test]
    fn any_value_for_any_setting_loads_within_its_documented_range_or_names_the_key(
        picks in proptest::collection::vec((any::<prop::sample::Index>(), any_setting_value()), 1..4),
    ) {
        let settings = every_setting();
        let documented = readme_settings();
        let chosen: Vec<(&str, &str, &str)> = picks
            .iter()
            .map(|(index, value)| {
                let (section, key, _) = index.get(&settings);
                (section.as_str(), key.as_str(), value.as_str())
            })
            .collect();
        let env: Vec<(String, String)> = chosen
            .iter()
            .map(|(section, key, value)| (env_name(section, key), (*value).to_owned()))
            .collect();
        match load(&env) {
            Ok(_) => {
                // The last value given for a key is the one in force.
                let mut last = BTreeMap::new();
                for (section, key, value) in &chosen {
                    last.insert(format!("{section}.{key}"), *value);
                }
                for (dotted, value) in last {
                    let range = Documented::parse(&documented[&dotted].1);
                    prop_assert!(
                        range.admits(value) != Some(false),
                        "{} = {:?} loaded, but the README documents {:?}", dotted, value, range
                    );
                }
            }
            Err(error) => {
                let message = error.to_string();
                let named = chosen
                    .iter()
                    .any(|(section, key, _)| message.contains(&format!("{section}.{key}")));
                prop_assert!(named, "{:?} -> {}", env, message);
            }
        }
    }
}

/// Every key has a row in the README's table, with its default as shipped.
#[test]
fn every_setting_is_in_the_readme_with_its_shipped_default() {
    let documented = readme_settings();
    for (section, key, default) in every_setting() {
        let dotted = format!("{section}.{key}");
        let (shown, range) = documented
            .get(&dotted)
            .unwrap_or_else(|| panic!("{dotted} is not in the README's settings table"));
        assert!(!range.is_empty(), "no range for {dotted}");
        let expected = match &default {
            toml::Value::String(s) => format!("`{s}`"),
            toml::Value::Array(items) if items.is_empty() => "`[]`".to_owned(),
            other => format!("`{other}`"),
        };
        // Strings are shown bare (`memory`), except the empty one (`""`).
        let expected = if expected == "``" {
            "`\"\"`".to_owned()
        } else {
            expected
        };
        assert_eq!(shown, &expected, "the README's default for {dotted}");
    }
    assert_eq!(
        documented.len(),
        every_setting().len(),
        "rows for keys that do not exist"
    );
}

/// Each documented range is the one enforced: its ends load, one step past them is refused
/// naming the key.
#[test]
fn the_documented_ranges_are_the_ranges_enforced() {
    let documented = readme_settings();
    let mut checked = 0;
    for (section, key, _) in every_setting() {
        let dotted = format!("{section}.{key}");
        let name = env_name(&section, &key);
        let with = |value: &str| load(&[(name.clone(), value.to_owned())]);
        let refused = |value: &str| match with(value) {
            Ok(_) => panic!("{dotted} = {value:?} loaded, outside its documented range"),
            Err(error) => assert!(error.to_string().contains(&dotted), "{dotted}: {error}"),
        };
        match Documented::parse(&documented[&dotted].1) {
            Documented::Whole(low, high) => {
                for inside in [low, high] {
                    assert!(with(&inside.to_string()).is_ok(), "{dotted} = {inside}");
                }
                if low > 0 {
                    refused(&(low - 1).to_string());
                }
                refused(&(high + 1).to_string());
            }
            Documented::Rate => {
                for inside in ["0.001", "1000000"] {
                    assert!(with(inside).is_ok(), "{dotted} = {inside}");
                }
                for outside in ["0", "-1", "1000000.5", "NaN"] {
                    refused(outside);
                }
            }
            Documented::Flag => {
                assert!(with("true").is_ok() && with("false").is_ok());
                refused("maybe");
            }
            Documented::OneOf(words) => {
                // `redis` needs a secret as well: the words are checked for being words.
                for word in &words {
                    if let Err(error) = with(word) {
                        assert!(
                            !error.to_string().contains("is not one of"),
                            "{dotted}: {error}"
                        );
                    }
                }
                refused("none-of-these");
            }
            Documented::Other => continue,
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} ranges were checked");
}
