use serde_json::{Value, json};

use super::*;

/// The detectors that fire on `text` (as a params value under a neutral key).
fn found(text: &str) -> Vec<String> {
    scan(&json!({ "v": text }), DetectSet::all()).into_iter().map(|f| f.detector).collect()
}

fn assert_hit(detector: &str, texts: &[&str]) {
    for t in texts {
        assert!(found(t).iter().any(|d| d == detector), "{detector} not found in {t:?}: {:?}", found(t));
    }
}

fn assert_miss(texts: &[&str]) {
    for t in texts {
        assert!(found(t).is_empty(), "reported {:?} in {t:?}", found(t));
    }
}

#[test]
fn aws_access_keys() {
    assert_hit(
        "aws_access_key",
        &["AKIAERIYWA6BOLRMSEM6", "id=ASIAUWYPB5TD57UJZTZN;", "\"AKIAH3GT6Z4YLBBJBDRM\""],
    );
    assert_miss(&[
        "AKIAIOSFODNN7EXAMPLE",
        "AKIAXXXXXXXXXXXXXXXX",
        "AKIA1234567890ABCDEF",
        "AKIAERIYWA6BOLRMSEM",   // 19 characters
        "AKIAERIYWA6BOLRMSEM6X", // 21
        "akiaeriywa6bolrmsem6",
    ]);
}

#[test]
fn github_tokens() {
    assert_hit(
        "github_token",
        &[
            "gho_jWCw63vMN4w1lLMt089y17E4TcEdb7xpD2Dz",
            "token ghp_R8aZc1LmQ2pW7xYb4NvK9sT3uE6hJ0dF5gHi ok",
            "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k1Lm3No5Pq",
        ],
    );
    assert_miss(&[
        "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "ghp_R8aZc1LmQ2pW7xYb4NvK9sT3",
        "ghx_R8aZc1LmQ2pW7xYb4NvK9sT3uE6hJ0dF5gHi",
    ]);
}

#[test]
fn slack_tokens() {
    assert_hit(
        "slack_token",
        &[
            "xoxb-20719388461-4918273645012-Qm3xT9vLpA2sK7wR4yZb8NcE",
            "xoxp-20719388461-20719388462-4918273645012-8f14e45fceea167a5a36dedd4bea2543",
        ],
    );
    assert_miss(&[
        "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",
        "xoxb-your-token-here",
        "xoxb-123-456-short",
    ]);
}

#[test]
fn stripe_keys() {
    assert_hit(
        "stripe_key",
        &["sk_live_51Hq3kLmN8pQ2rS5tV7wX9yZa", "Bearer rk_live_Qm3xT9vLpA2sK7wR4yZb8NcEu6"],
    );
    assert_miss(&[
        "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
        "sk_live_xxxxxxxxxxxxxxxxxxxxxxxx",
        "pk_live_51Hq3kLmN8pQ2rS5tV7wX9yZa",
        "sk_live_51Hq3kL",
    ]);
}

#[test]
fn google_openai_anthropic_keys() {
    assert_hit("google_api_key", &["key=AIzaJ6X_I1gOwlM7CedYznF6-oADKnBeuTjELP_"]);
    assert_miss(&["AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe", "AIzaJ6X_I1gOwlM7CedYznF6-oADKnBe"]);
    assert_hit("openai_key", &["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"]);
    assert_hit(
        "openai_key",
        &["sk-proj-Qm3xT9vLpA2sK7wR4yZb8NcEu6Hd1Gf5Jk0Lm3xT9vLpA2sK7wR4yZb8NcEu6Hd1Gf5Jk0L"],
    );
    assert_miss(&[
        "sk-...",
        "sk-proj-...",
        "sk-your-key-here",
        "risk-assessment-2026-12-06-final-report-v2-approved",
    ]);
    let anthropic = "sk-ant-api03-KCj39wxoSoZrGsFHplUpHh8lKht0XSz2_pX42xLqPQi9GOW46DW6wceJMaVUUCia906A361sFE4YBt8iAHH3ocB75zdGRAA";
    assert_hit("anthropic_key", &[anthropic]);
    assert_eq!(found(anthropic), vec!["anthropic_key"], "not also an OpenAI key");
    assert_miss(&["sk-ant-api03-...", "sk-ant-api03-KCj39wxoSoZrGsFHplUpHh8lKht0"]);
}

#[test]
fn jwts() {
    let token = "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI1OTgyNTc2MSIsImlhdCI6MTc2MjE1NTU0OH0.NA7HzoHFldCKiqlCwInidATT2latctYbp9qSjKe1I5i";
    assert_hit("jwt", &[token, &format!("Authorization: Bearer {token}")]);
    assert_miss(&[
        // jwt.io's example.
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9",
        "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI1OTgyNTc2MSJ9.",
    ]);
}

#[test]
fn private_keys() {
    let body = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\nVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK";
    assert_hit(
        "private_key",
        &[&format!("-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----")],
    );
    assert_hit("private_key", &[&format!("key: -----BEGIN OPENSSH PRIVATE KEY-----\n{body}")]);
    assert_miss(&[
        "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----",
        &format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----"),
        &format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----"),
    ]);
}

#[test]
fn high_entropy_assignments() {
    assert_hit(
        "high_entropy_assignment",
        &[
            "DB_PASSWORD=q8Zt3LmW0xRp7Kd2Vn5Y",
            "client_secret: 7f3a9c1e5b2d8f4a6c0e9b1d3f5a7c2e",
            "Authorization: Bearer Qm3xT9vLpA2sK7wR4yZb8NcEu6Hd1Gf5",
            "aws_secret_access_key = je7MtGbClwBF/2Zp9Utk/h3yCo8nvbQ4rT8wKd2Z",
        ],
    );
    assert_miss(&[
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "api_key=YOUR_API_KEY_HERE",
        "token=${GITHUB_TOKEN}",
        "password: changeme",
        "next_page_token=Qm3xT9vLpA2sK7wR4yZb8NcEu6Hd1Gf5",
        "session_token=6f1c2b7a-9d3e-4f50-8a1b-2c3d4e5f6a7b",
        "max_tokens: 4096",
        "secret_name=prod-database-password",
    ]);
    // The value of a secret-named key, and after an authorization scheme.
    let params =
        json!({"headers": {"Authorization": "Bearer Qm3xT9vLpA2sK7wR4yZb8NcEu6Hd1Gf5"}, "note": "ok"});
    let f = scan(&params, DetectSet::all());
    assert_eq!(
        f,
        vec![Finding { detector: "high_entropy_assignment".into(), path: "$.headers.Authorization".into() }]
    );
}

#[test]
fn card_numbers() {
    assert_hit(
        "card_number",
        &["5188 4396 5861 8791", "card 4556-7375-8689-9855 exp 12/28", "378734493671018", "4556737586899855"],
    );
    assert_miss(&[
        "4111 1111 1111 1111", // a test card
        "4242424242424242",
        "5188 4396 5861 8792",    // Luhn fails
        "1234 5678 9012 3456",    // no network
        "0.4556737586899855",     // a decimal
        "4556737586899855123456", // too long
        "ts=1733443200000",
    ]);
}

#[test]
fn ibans() {
    assert_hit("iban", &["GB98DRDD96182760699405", "IBAN: DE75 5121 0800 1245 1261 99 please"]);
    assert_miss(&[
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "DE12 3456 7890 1234 5678 99",
        "GB98DRDD9618276069940",
        "XX98DRDD96182760699405",
    ]);
}

#[test]
fn emails() {
    assert_hit(
        "email",
        &["anna.k@gmail.com", "mail <li.wei+work@mail.uni-heidelberg.de>.", "jonas_42@acme-corp.io"],
    );
    assert_miss(&[
        "user@example.com",
        "a@sub.example.org",
        "someone@test",
        "git@github.com:faramesh/faramesh.git",
        "icon@2x.png",
        "lodash@4.17.21",
        "@scope/pkg",
        "12345+noreply@users.noreply.github.com",
        "https://user:pass@host.internal/path",
        "root@localhost",
    ]);
}

#[test]
fn phones() {
    assert_hit(
        "phone",
        &[
            "+1 415 867 5309",
            "call +44 7911 123456 now",
            "+49 30 12345678",
            "+33 6 12 34 56 78",
            "+819012345678",
        ],
    );
    assert_miss(&[
        "+1 555 0123",
        "tel: +1-202-555-0143",
        "+44 20 7946 0958",
        "+44 7700 900123",
        "1.0.0+20130313144700",
        "+100% growth",
        "v+1.2.3.4.5.6.7.8.9.10",
        "+49 30 123",
    ]);
}

#[test]
fn us_ssns() {
    assert_hit("us_ssn", &["710-39-4682", "SSN: 536-22-1890."]);
    assert_miss(&[
        "078-05-1120",
        "123-45-6789",
        "000-12-3456",
        "666-12-3456",
        "987-65-4321",
        "536-00-1890",
        "536-22-0000",
        "part 123-45-67890",
        "2026-12-06",
        "536221890",
    ]);
}

#[test]
fn base64_and_percent_encoded_values_are_decoded_once() {
    // base64("deploy with key AKIAERIYWA6BOLRMSEM6 today")
    let b64 = "ZGVwbG95IHdpdGgga2V5IEFLSUFFUklZV0E2Qk9MUk1TRU02IHRvZGF5";
    assert_eq!(found(b64), vec!["aws_access_key"]);
    assert_eq!(found("q=owner%3A%20%3Canna.k%40gmail.com%3E"), vec!["email"]);
    // Twice encoded is not decoded twice.
    let twice = "WkdWd2JHOTVJSGRwZEdnZ2EyVjVJRUZMU1VGRlVrbFpWMEUyUWs5TVVrMVRSVTAySUhSdlpHRjU=";
    assert!(found(twice).is_empty());
    // Ordinary text, base64'd, is nothing.
    assert!(found("SGVsbG8gd29ybGQsIHRoaXMgaXMgYW4gb3JkaW5hcnkgc2VudGVuY2Uu").is_empty());
}

#[test]
fn paths_name_where_the_value_is() {
    let params = json!({
        "args": {"note": "key AKIAERIYWA6BOLRMSEM6"},
        "items": [{}, {}, {"token": "ghp_R8aZc1LmQ2pW7xYb4NvK9sT3uE6hJ0dF5gHi"}],
        "x-api key": ["mail anna.k@gmail.com"],
    });
    let f = scan(&params, DetectSet::all());
    let pairs: Vec<(&str, &str)> = f.iter().map(|f| (f.detector.as_str(), f.path.as_str())).collect();
    assert_eq!(
        pairs,
        vec![
            ("aws_access_key", "$.args.note"),
            ("github_token", "$.items[2].token"),
            ("email", "$[\"x-api key\"][0]"),
        ]
    );
    // Only the detectors asked for run.
    let secrets_only = scan(&params, DetectSet::group(Group::Secrets));
    assert!(secrets_only.iter().all(|f| f.detector != "email"));
}

#[test]
fn redaction_replaces_the_value_and_keeps_the_rest() {
    let params = json!({
        "note": "keys: AKIAERIYWA6BOLRMSEM6 and AKIAERIYWA6BOLRMSEM6, mail anna.k@gmail.com",
        "blob": "ZGVwbG95IHdpdGgga2V5IEFLSUFFUklZV0E2Qk9MUk1TRU02IHRvZGF5",
        "n": 3,
    });
    let token = |d: Detector, v: &str| format!("[{}:{}]", d.name(), v.len());
    let out = redact(&params, DetectSet::all(), &token);
    assert_eq!(
        out,
        json!({
            "note": "keys: [aws_access_key:20] and [aws_access_key:20], mail [email:16]",
            "blob": "[aws_access_key:20]",
            "n": 3,
        })
    );
    let text = out.to_string();
    assert!(!text.contains("AKIAERIYWA6BOLRMSEM6") && !text.contains("gmail"));
}

#[test]
fn names_and_groups() {
    assert_eq!(DetectSet::named("secrets"), Some(DetectSet::group(Group::Secrets)));
    assert!(DetectSet::named("pii").is_some_and(|s| s.contains(Detector::US_SSN)));
    assert_eq!(DetectSet::named("card_number"), Some(DetectSet::of(Detector::CARD_NUMBER)));
    assert_eq!(DetectSet::named("credit_card"), None);
    for d in Detector::all() {
        assert_eq!(Detector::by_name(d.name()), Some(d));
    }
    for id in pii::NATIONAL_IDS {
        assert_eq!(id.detector.group(), Group::Pii, "{}", id.detector.name());
    }
}

#[test]
fn never_panics_on_odd_input() {
    let odd = [
        "",
        "+",
        "@",
        "-----BEGIN ",
        "-----BEGIN RSA PRIVATE KEY-----",
        "eyJ.",
        "eyJhbGciOiJIUzI1NiJ9.eyJ.",
        "%",
        "%4",
        "%zz%41",
        "é@é.é",
        "+1 (((((",
        "DE",
        "DE89",
        "ＡＫＩＡ",
        "4\u{0301}111 1111 1111 1111",
        "sk-ant-",
        "sk-ant-api03",
        "xoxb-",
        "=:=:=",
    ];
    for t in odd {
        let _ = scan(&json!({"password": t, "v": [t, {"k": t}]}), DetectSet::all());
        let _ = redact(&json!({"v": t}), DetectSet::all(), &|d, _| d.name().to_owned());
    }
    // Every byte pattern that is valid UTF-8, built from the characters detectors care about.
    let alphabet: Vec<char> = "A4+-@.% =:eyJ_0Kk\n€".chars().collect();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..2000 {
        let text: String = (0..40)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                alphabet[(state % alphabet.len() as u64) as usize]
            })
            .collect();
        let _ = scan(&Value::String(text.clone()), DetectSet::all());
        let _ = redact(&json!({"token": text}), DetectSet::all(), &|d, _| d.name().to_owned());
    }
}
