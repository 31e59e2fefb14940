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

/// Every key of the shipped configuration, as `(section, key)`.
fn every_setting() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).unwrap();
    let table: toml::Table = text.parse().unwrap();
    table
        .iter()
        .flat_map(|(section, keys)| {
            keys.as_table()
                .unwrap()
                .keys()
                .map(|key| (section.clone(), key.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Values of every kind and size a person (or a typo) could put in a setting.
fn any_setting_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
        (0u64..100_000).prop_map(|n| n.to_string()),
        Just("999999999999999999999999".to_owned()),
        Just("-1".to_owned()),
        Just("0".to_owned()),
        Just("1e308".to_owned()),
        Just("NaN".to_owned()),
        Just("inf".to_owned()),
        Just("true".to_owned()),
        Just("".to_owned()),
        Just("[\"x\"]".to_owned()),
        Just("127.0.0.1".to_owned()),
        "\\PC{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    /// Any value for any key (several at once): the settings load or are refused with
    /// the key named; never a panic.
    #[test]
    fn any_value_for_any_setting_loads_or_names_the_key(
        picks in proptest::collection::vec((any::<prop::sample::Index>(), any_setting_value()), 1..4),
    ) {
        let settings = every_setting();
        let env: Vec<(String, String)> = picks
            .iter()
            .map(|(index, value)| {
                let (section, key) = index.get(&settings);
                (format!("CHATDEMO_{}__{}", section.to_uppercase(), key.to_uppercase()), value.clone())
            })
            .collect();
        match Settings::load_from(None, env.clone(), &CliOverrides::default()) {
            Ok(_) => {}
            Err(error) => {
                let message = error.to_string();
                let named = picks.iter().any(|(index, _)| {
                    let (section, key) = index.get(&settings);
                    message.contains(&format!("{section}.{key}"))
                });
                prop_assert!(named, "{:?} -> {}", env, message);
            }
        }
    }
}

#[test]
fn every_setting_has_a_documented_range() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for (section, key) in every_setting() {
        let row = readme
            .lines()
            .find(|line| line.starts_with(&format!("| `{section}.{key}` |")))
            .unwrap_or_else(|| panic!("{section}.{key} is not in the README's settings table"));
        let cells: Vec<&str> = row.split(" | ").collect();
        assert!(
            cells.len() >= 4 && !cells[2].trim().is_empty(),
            "no range for {section}.{key}: {row}"
        );
    }
}
