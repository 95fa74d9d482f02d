use super::synth::{self, Rng};
use super::*;
use proptest::prelude::*;

fn api_key(seed: u64) -> String {
    synth::anthropic_key(Kind::AnthropicApiKey, &mut Rng::new(seed))
}

fn admin_key(seed: u64) -> String {
    synth::anthropic_key(Kind::AnthropicAdminKey, &mut Rng::new(seed))
}

/// The secrets found in `text`, as strings.
fn found(text: &str) -> Vec<String> {
    find_all(text.as_bytes()).iter().map(|m| String::from_utf8_lossy(m.secret(text.as_bytes())).into_owned()).collect()
}

#[test]
fn shapes() {
    let k = api_key(1);
    assert_eq!(k.len(), 108);
    assert_eq!(admin_key(1).len(), 110);
    assert_eq!(MAX_SECRET_LEN, 110);
}

#[test]
fn bare_key_is_found_at_start_and_end_of_buffer() {
    let k = api_key(2);
    assert_eq!(found(&k), vec![k.clone()]);
    let m = find_all(k.as_bytes());
    assert_eq!(m[0].kind, Kind::AnthropicApiKey);
    assert_eq!((m[0].start, m[0].end), (0, 108));
}

#[test]
fn admin_key_is_found() {
    let k = admin_key(3);
    let m = find_all(format!("ADMIN={k}\n").as_bytes());
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].kind, Kind::AnthropicAdminKey);
    assert_eq!(m[0].end - m[0].start, 110);
}

#[test]
fn every_non_key_neighbour_is_a_boundary() {
    let k = api_key(4);
    let neighbours = [
        "\"", "'", "`", "&", "}", "{", "=", " ", "\t", "\n", "\r\n", ";", ":", ",", ")", "(", "]", "[", "<", ">", "/",
        "?", "#", "|", "\\n", "\\r", "\\t", "\0", "\u{7f}", "é", "%", "+", "*", ".", "!", "@", "$", "~", "^",
    ];
    for left in neighbours {
        for right in neighbours {
            let text = format!("{left}{k}{right}");
            assert_eq!(found(&text), vec![k.clone()], "left {left:?} right {right:?}");
        }
    }
}

#[test]
fn known_gaps_of_public_scanners_are_covered() {
    let k = api_key(5);
    // URL query (`&` after), object/template literals (`}` after)
    for text in [
        format!("https://example.test/v1?key={k}&model=claude"),
        format!("const cfg = {{apiKey:{k}}}"),
        format!("`${{'{k}'}}`"),
        format!("{{\"key\":\"{k}\"}}"),
        format!("\"prefix\\n{k}\\nsuffix\""),
        format!("x-api-key={k}"),
        format!("{{\"k\":\"\\u0022{k}\\u0022\"}}"),
        format!("key%3D{k}%26next"),
    ] {
        assert_eq!(found(&text), vec![k.clone()], "{text}");
    }
}

#[test]
fn a_longer_run_of_key_characters_is_not_a_key() {
    let k = api_key(6);
    for (left, right) in [
        ("", "x"),
        ("", "-"),
        ("", "_"),
        ("", "0"),
        ("", "AA"),
        ("x", ""),
        ("-", ""),
        ("_", ""),
        ("9", ""),
        ("n", ""), // an `n` that is not part of a `\n` escape
        ("%3", ""),
    ] {
        let text = format!("{left}{k}{right}");
        assert!(found(&text).is_empty(), "{text}");
    }
}

#[test]
fn wrong_lengths_and_endings_are_not_keys() {
    let k = api_key(7);
    let free = &k[13..106];
    for text in [
        format!("sk-ant-api03-{}AA", &free[..92]),
        format!("sk-ant-api03-{free}xAA"),
        format!("sk-ant-api03-{free}AB"),
        format!("sk-ant-api03-{free}Aa"),
        format!("sk-ant-api03-{free}A"),
        format!("sk-ant-api04-{free}AA"),
        format!("sk-ant-api3-{free}AA"),
        format!("sk-ant-admin02-{free}AA"),
        format!("sk-ant-api03_{free}AA"),
        format!("SK-ANT-API03-{free}AA"),
        "sk-ant-".to_string(),
        "sk-ant-api03-".to_string(),
        format!("sk-ant-api03-{}", &free[..50]),
    ] {
        assert!(found(&text).is_empty(), "{text}");
    }
}

#[test]
fn placeholders_are_not_keys() {
    let k = api_key(8);
    let free = &k[13..106];
    for text in [
        format!("sk-ant-api03-{}AA", "x".repeat(93)),
        format!("sk-ant-api03-{}AA", "X".repeat(93)),
        format!("sk-ant-api03-{}AA", "0".repeat(93)),
        format!("sk-ant-api03-{}AA", &"abcdefghijklmnopqrstuvwxyz".repeat(4)[..93]),
        format!("sk-ant-api03-{}AA", &"your-key-here-".repeat(7)[..93]),
        format!("sk-ant-api03-EXAMPLE{}AA", &free[..86]),
        format!("sk-ant-api03-{}xxxxxxAA", &free[..87]),
        format!("sk-ant-api03-{}AA", &"ab".repeat(47)[..93]),
    ] {
        assert_eq!(text.len(), 108, "{text}");
        assert!(found(&text).is_empty(), "{text}");
    }
}

#[test]
fn several_keys_in_a_row() {
    let a = api_key(9);
    let b = admin_key(10);
    let text = format!("{a}&{b}}}{a}\n{b}");
    assert_eq!(found(&text), vec![a.clone(), b.clone(), a, b]);
    let offsets: Vec<_> = find_all(text.as_bytes()).iter().map(|m| m.start).collect();
    assert_eq!(offsets, vec![0, 109, 220, 329]);
}

#[test]
fn adjacent_keys_without_separator_form_one_long_run() {
    let a = api_key(11);
    assert!(found(&format!("{a}{a}")).is_empty());
}

#[test]
fn keyward_keys_are_found_and_verified() {
    use keyward_core::keys;
    use keyward_core::Environment;
    use secrecy::ExposeSecret;
    for env in Environment::ALL {
        let k = keys::generate_virtual(env);
        let k = k.expose_secret();
        let m = find_all(format!("KEY='{k}'").as_bytes());
        assert_eq!(m.len(), 1, "{env}");
        assert_eq!(m[0].kind, Kind::KeywardVirtualKey);
        assert_eq!(m[0].end - m[0].start, k.len());
    }
    let t = keys::generate_admin_token();
    let t = t.expose_secret();
    let m = find_all(format!("Authorization: Bearer {t}\r\n").as_bytes());
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].kind, Kind::KeywardAdminToken);
}

#[test]
fn synthetic_keyward_keys_pass_the_real_parser() {
    let mut rng = Rng::new(12);
    for _ in 0..50 {
        for kind in [Kind::KeywardVirtualKey, Kind::KeywardAdminToken] {
            let k = synth::keyward_key(kind, &mut rng);
            assert!(keyward_core::keys::parse(&k).is_ok(), "{k}");
            assert_eq!(find_all(k.as_bytes())[0].kind, kind);
        }
    }
}

#[test]
fn keyward_lookalikes_are_not_keys() {
    let mut rng = Rng::new(13);
    let k = synth::keyward_key(Kind::KeywardVirtualKey, &mut rng);
    let secret = &k[k.find('_').map(|i| i + 1).unwrap_or(0)..];
    let secret = &secret[secret.find('_').map(|i| i + 1).unwrap_or(0)..];
    assert_eq!(secret.len(), 46);
    let mut broken = k.clone();
    let last = broken.pop().unwrap();
    broken.push(if last == 'a' { 'b' } else { 'a' });
    for text in [
        broken,
        format!("kw_qa_{secret}"),
        format!("kw_production_{secret}"),
        format!("kw_dev_{}", "x".repeat(46)),
        format!("{k}x"),
        format!("x{k}"),
        format!("_{k}"),
        format!("kw_dev_{}", &secret[..45]),
        "kw_".to_string(),
        "kwa_".to_string(),
    ] {
        assert!(found(&text).is_empty(), "{text}");
    }
    // punctuation that is not a base62 character ends the key
    for right in ["_", "-", "&", "}", "\"", "\\n"] {
        assert_eq!(found(&format!("{k}{right}")), vec![k.clone()], "{right}");
    }
}

#[test]
fn synthetic_decoys_are_never_reported() {
    let mut rng = Rng::new(14);
    for _ in 0..400 {
        let d = synth::decoy(&mut rng);
        assert!(found(&d).is_empty(), "{d}");
        assert!(found(&format!("\"{d}\"")).is_empty(), "{d}");
    }
}

#[test]
fn fingerprint_is_sha256_hex() {
    assert_eq!(fingerprint(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

#[test]
fn kind_ids_are_stable() {
    let ids: Vec<_> = Kind::ALL.iter().map(|k| k.id()).collect();
    assert_eq!(ids, ["anthropic-api-key", "anthropic-admin-key", "keyward-virtual-key", "keyward-admin-token"]);
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(buf in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let ms = find_all(&buf);
        for m in ms {
            prop_assert!(m.start < m.end && m.end <= buf.len());
        }
    }

    #[test]
    fn never_panics_on_anchor_rich_bytes(parts in proptest::collection::vec(
        prop_oneof![
            Just(b"sk-ant-".to_vec()),
            Just(b"sk-ant-api03-".to_vec()),
            Just(b"sk-ant-admin01-".to_vec()),
            Just(b"kw_".to_vec()),
            Just(b"kw_dev_".to_vec()),
            Just(b"kwa_".to_vec()),
            Just(b"AA".to_vec()),
            Just(b"\\".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..40),
        ], 0..40)) {
        let buf: Vec<u8> = parts.concat();
        let _ = find_all(&buf);
    }

    #[test]
    fn a_key_between_non_key_bytes_is_always_found(
        seed in any::<u64>(),
        left in proptest::collection::vec(any::<u8>(), 0..64),
        right in proptest::collection::vec(any::<u8>(), 0..64),
        admin in any::<bool>(),
    ) {
        let kind = if admin { Kind::AnthropicAdminKey } else { Kind::AnthropicApiKey };
        let k = synth::anthropic_key(kind, &mut Rng::new(seed));
        // force non-key neighbours; the rest of the context is arbitrary
        let mut buf = left.clone();
        buf.push(b' ');
        let start = buf.len();
        buf.extend_from_slice(k.as_bytes());
        buf.push(b'&');
        buf.extend_from_slice(&right);
        let ms = find_all(&buf);
        prop_assert!(ms.iter().any(|m| m.start == start && m.kind == kind && m.secret(&buf) == k.as_bytes()));
    }
}
