//! Proptest strategies for arbitrary JSON, what the property tests of untrusted input feed in.

use proptest::prelude::*;
use serde_json::Value;

/// Any JSON scalar: null, a bool, an `i64`, a finite `f64`, or a string matching `text`.
pub fn scalar(text: &'static str) -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        text.prop_map(Value::from),
    ]
    .boxed()
}

/// `leaf` values nested up to `depth` levels in arrays and objects (keys from `key`) of fewer
/// than `width` items each, aiming at `size` values in all.
pub fn nested(
    leaf: BoxedStrategy<Value>,
    key: BoxedStrategy<String>,
    depth: u32,
    size: u32,
    width: u32,
) -> BoxedStrategy<Value> {
    let items = 0..width as usize;
    leaf.prop_recursive(depth, size, width, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), items.clone()).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, items.clone())
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}
