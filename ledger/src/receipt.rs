//! What a transaction did and where it is: the types a node's API reports
//! about committed transactions (no store needed to name them).

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::error::TxError;

/// The outcome of one transaction in a block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Receipt {
    pub status: TxStatus,
    #[serde(with = "crate::serde_u128")]
    pub fee_paid: u128,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxStatus {
    Success,
    /// Left out of the block; committed blocks never hold rejected transactions.
    Rejected {
        error: String,
    },
}

impl Receipt {
    pub fn rejected(error: &TxError) -> Receipt {
        Receipt {
            status: TxStatus::Rejected {
                error: error.to_string(),
            },
            fee_paid: 0,
        }
    }
}

/// Where a committed transaction is: block height and index in the block.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct TxLocation {
    pub height: u64,
    pub index: u32,
}
