//! A simulated market for the ticker page: a random walk per symbol, one hub topic per symbol
//! (`/ticker/{SYMBOL}`). Seedable, so a run can be reproduced; `--market-interval-ms 0` turns it
//! off.

use crate::AppState;
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::time::Duration;
use tidings_app::model::Quote;
use tidings_hub::{PublishError, Update};

/// The symbols and their opening prices.
pub const SYMBOLS: [(&str, f64); 6] = [
    ("ACME", 101.25),
    ("GLOBEX", 57.80),
    ("HOOLI", 312.40),
    ("INITECH", 18.05),
    ("STARK", 842.10),
    ("UMBRELLA", 64.30),
];

/// The walk: each tick, every price moves by a normally distributed fraction (σ = 0.4 %).
pub(crate) struct Market {
    rng: StdRng,
    prices: Vec<f64>,
}

impl Market {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            prices: SYMBOLS.iter().map(|(_, p)| *p).collect(),
        }
    }

    /// The next quote of every symbol.
    pub(crate) fn tick(&mut self, at_ms: u64) -> Vec<Quote> {
        SYMBOLS
            .iter()
            .zip(&mut self.prices)
            .map(|((symbol, _), price)| {
                // Box–Muller: a standard normal from two uniforms.
                let (u1, u2): (f64, f64) =
                    (self.rng.random_range(f64::EPSILON..1.0), self.rng.random());
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                let before = *price;
                *price = (before * (0.004 * z).exp() * 100.0).round() / 100.0;
                Quote {
                    symbol: (*symbol).into(),
                    price: *price,
                    change: *price - before,
                    at_ms,
                }
            })
            .collect()
    }
}

pub(crate) async fn run(state: AppState, interval: Duration, seed: u64) {
    let mut market = Market::new(seed);
    let mut ticks = tokio::time::interval(interval);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        // The walk goes on everywhere; on a cluster only the leading node publishes it.
        let quotes = market.tick(crate::now_ms());
        if !state.hub.leads() {
            continue;
        }
        for quote in quotes {
            let data = serde_json::to_string(&quote).expect("serializable");
            let Ok(update) = Update::public(format!("/ticker/{}", quote.symbol), data) else {
                continue;
            };
            match state.hub.publish(update).await {
                Err(PublishError::ShuttingDown) => return,
                // The history is away for now (logged by the hub): skip this tick.
                Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_walk() {
        let (mut a, mut b) = (Market::new(7), Market::new(7));
        for t in 0..50 {
            assert_eq!(a.tick(t), b.tick(t));
        }
        let quotes = Market::new(8).tick(0);
        assert_eq!(quotes.len(), SYMBOLS.len());
        for (quote, (symbol, open)) in quotes.iter().zip(SYMBOLS) {
            assert_eq!(quote.symbol, symbol);
            assert!((quote.price - open).abs() < open * 0.05, "a small step");
            assert!((quote.price - open - quote.change).abs() < 1e-9);
        }
    }
}
