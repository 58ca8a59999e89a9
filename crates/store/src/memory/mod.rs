//! In-process adapters: the embedded default for `RankStore` and `HotState`, and `BUS_KIND=inmem`
//! (tests only: unconsumed events are lost on a crash).
