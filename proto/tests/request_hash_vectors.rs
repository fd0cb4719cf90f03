//! The request_hash test vectors shared with the Python SDK (`sdk/python/tests`): both must
//! compute exactly these hashes.

use faramesh_proto::request_hash;
use serde_json::Value;

#[test]
fn shared_vectors_hash_as_recorded() {
    let text = include_str!("request_hash_vectors.json");
    let vectors: Vec<Value> = serde_json::from_str(text).unwrap();
    assert!(vectors.len() >= 10);
    for v in &vectors {
        let s = |k: &str| v[k].as_str().unwrap().to_owned();
        let got =
            request_hash(&s("agent_id"), &s("tool"), &s("operation"), &v["params"], &v["context"]).unwrap();
        assert_eq!(got, s("request_hash"), "vector for agent `{}`", s("agent_id"));
    }
}
