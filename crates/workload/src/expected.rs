//! What a correct `SELECT account, SUM(amount), COUNT(*) ... GROUP BY
//! account` gives for the records generated so far.

use crate::Record;

/// One account's totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub cents: i64,
    pub count: u64,
}

/// Totals by account number.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    totals: Vec<Totals>,
    records: u64,
}

impl Expected {
    pub fn new(accounts: u64) -> Expected {
        Expected {
            totals: vec![Totals::default(); accounts as usize],
            records: 0,
        }
    }

    pub fn add(&mut self, r: &Record) {
        let t = &mut self.totals[r.account as usize];
        t.cents += r.cents;
        t.count += 1;
        self.records += 1;
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    /// Account numbers with at least one record, and their totals.
    pub fn accounts(&self) -> impl Iterator<Item = (u64, Totals)> + '_ {
        self.totals
            .iter()
            .enumerate()
            .filter(|(_, t)| t.count > 0)
            .map(|(i, t)| (i as u64, *t))
    }

    pub fn get(&self, account: u64) -> Option<Totals> {
        self.totals.get(account as usize).copied()
    }
}
