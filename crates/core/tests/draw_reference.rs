//! `liveops-draw-v1` against a fixed known-answer vector and against an independent
//! re-implementation from the specification (`scripts/liveops_draw_v1.py`, Python standard
//! library only), on many random draws.

#![allow(clippy::unwrap_used)] // tests may unwrap

use liveops_core::draw::{self, PublishedDraw, ALGORITHM};
use liveops_testkit::fixtures::reference_draw as reference;
use serde_json::{json, Value};

/// Seed 00 01 .. 1f, seven players (one entered twice), three winners: computed by the Python
/// reference and written down here, so a change to either side shows.
#[test]
fn the_known_answer_vector_holds() {
    let seed: Vec<u8> = (0u8..32).collect();
    let raw = [
        "player_charlie",
        "player_alpha",
        "player_echo",
        "player_bravo",
        "player_delta",
        "player_alpha",
        "player_foxtrot",
        "player_golf",
    ];
    let entrants = draw::entrants(raw);
    assert_eq!(
        draw::commitment(&seed),
        "630dcd2966c4336691125448bbb25b4ff412a49c732db2c8abc1b8581bd710dd"
    );
    assert_eq!(
        draw::entrants_hash(&entrants),
        "6d784973ec1d944e7e7ec9466fae085d9c9b8934c8cdf705131e1ece68d81011"
    );
    assert_eq!(
        draw::draw(&seed, &entrants, 3),
        ["player_golf", "player_delta", "player_alpha"]
    );
    let python = reference(&json!({"seed": hex::encode(&seed), "entrants": raw, "winners": 3}));
    assert_eq!(
        python["winners"],
        json!(["player_golf", "player_delta", "player_alpha"])
    );
}

#[test]
fn rust_and_the_reference_agree_on_random_draws() {
    let rounds: Vec<([u8; 32], Vec<String>, usize)> = (0..40u32)
        .map(|round| {
            let seed = std::array::from_fn(|i| (i as u32 * 31 + round * 17) as u8 ^ 0x5a);
            let n = (round * 7) % 60;
            let raw = (0..n)
                .map(|i| format!("p{}_{}", (i * 7919 + round) % 97, i % 5))
                .collect();
            (seed, raw, (round % 9) as usize + 1)
        })
        .collect();
    let requests: Vec<Value> = rounds
        .iter()
        .map(|(seed, raw, wanted)| {
            json!({"seed": hex::encode(seed), "entrants": raw, "winners": wanted})
        })
        .collect();
    let answers = reference(&json!(requests));
    for (round, ((seed, raw, wanted), python)) in
        rounds.iter().zip(answers.as_array().unwrap()).enumerate()
    {
        let entrants = draw::entrants(raw.clone());
        let ours = draw::draw(seed, &entrants, *wanted);
        assert_eq!(python["entrants"], json!(entrants), "round {round}");
        assert_eq!(
            python["entrantsHash"],
            json!(draw::entrants_hash(&entrants)),
            "round {round}"
        );
        assert_eq!(python["winners"], json!(ours), "round {round}");
        let published = PublishedDraw {
            algorithm: ALGORITHM.into(),
            commitment: draw::commitment(seed),
            entrants_hash: draw::entrants_hash(&entrants),
            entrant_count: Some(entrants.len() as u64),
            entrants: Some(entrants.clone()),
            seed: Some(hex::encode(seed)),
            winner_count: Some(*wanted as u32),
            winners: Some(ours),
        };
        assert_eq!(draw::verify(&published, raw), Ok(()), "round {round}");
    }
}
