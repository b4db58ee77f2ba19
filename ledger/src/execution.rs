//! Executing transfers: building a block from candidates and verifying a
//! proposed block, both ending in an [`ExecutedBlock`] ready to commit.
//!
//! The rules, the same for every kind of transaction: the chain id matches,
//! the nonce equals the sender's next nonce, the fee is at least the genesis
//! minimum (for an Ethereum transaction: its fee cap is at least the base fee,
//! see [`crate::eth`]) and the balance covers amount plus fee. The fee goes
//! to the block's proposer, so no block changes the total supply. A
//! governance transaction moves no funds beyond its fee and must also pass
//! the governance rules ([`crate::governance`]); at the end of every block
//! the governance state enacts, expires and retires what is due, and the
//! header names the sets of its own height and the next.

use crate::governance::{GovernanceState, validators_hash};

use std::collections::HashMap;
use std::sync::Arc;

use jmt::storage::TreeUpdateBatch;

use crate::block::{Block, Commit, Header, last_commit_hash, merkle_root};
use crate::crypto::{Address, Hash};
use crate::error::{BlockError, StoreError, TxError};
use crate::state::{Account, StateReader};
use crate::store::Store;
use crate::tx::{SignedTransaction, VerifiedTransaction};

pub use crate::params::ExecParams;
pub use crate::receipt::{Receipt, TxStatus};

/// A block whose transactions have been applied to the latest state, with
/// everything the store writes when it commits.
#[derive(Debug)]
pub struct ExecutedBlock {
    pub block: Block,
    pub receipts: Vec<Receipt>,
    /// Ids and recovered senders of the block's transactions, in block order.
    pub tx_hashes: Vec<Hash>,
    pub senders: Vec<Address>,
    pub(crate) changes: Vec<(Address, Account)>,
    /// The governance state after the block, if the block changed it.
    pub(crate) governance: Option<GovernanceState>,
    pub(crate) tree: TreeUpdateBatch,
}

impl ExecutedBlock {
    /// Every account the block changed, sorted by address.
    pub fn changed_accounts(&self) -> &[(Address, Account)] {
        &self.changes
    }

    /// The governance state after the block, if the block changed it.
    pub fn governance(&self) -> Option<&GovernanceState> {
        self.governance.as_ref()
    }
}

/// The header fields a proposer chooses; the rest follow from the store and
/// the transactions.
#[derive(Clone, Debug)]
pub struct Proposal {
    pub time: u64,
    pub proposer: Address,
    pub last_commit: Option<Commit>,
}

/// Accounts as changed so far by a block, over the committed state.
struct Overlay<'a, S> {
    base: &'a S,
    changed: HashMap<Address, Account>,
    /// The committed governance state, and the block's copy once a
    /// governance transaction or the end of the block changes it.
    base_governance: Arc<GovernanceState>,
    governance: Option<GovernanceState>,
    height: u64,
}

impl<'a, S: StateReader> Overlay<'a, S> {
    fn new(base: &'a S, height: u64) -> Result<Self, StoreError> {
        Ok(Overlay {
            base,
            changed: HashMap::new(),
            base_governance: base.governance()?,
            governance: None,
            height,
        })
    }

    /// The hashes of the sets of this height and the next, as the header
    /// names them.
    fn validators_hashes(&self) -> (Hash, Hash) {
        let g = &self.base_governance;
        (
            validators_hash(g.members_at(self.height)),
            validators_hash(g.members_at(self.height + 1)),
        )
    }

    /// Ends the block: the governance state's end-of-block step.
    fn end_block(&mut self, params: &ExecParams) {
        let touched = self.governance.is_some();
        let mut state = self
            .governance
            .take()
            .unwrap_or_else(|| (*self.base_governance).clone());
        if state.end_block(&params.governance, self.height) || touched {
            self.governance = Some(state);
        }
    }

    fn get(&self, address: &Address) -> Result<Account, StoreError> {
        match self.changed.get(address) {
            Some(account) => Ok(*account),
            None => self.base.account(address),
        }
    }

    /// Applies one verified transfer, or leaves the overlay untouched and
    /// says why not (`Ok(Err(_))`). An outer `Err` is a store failure, not
    /// the transaction's fault.
    fn apply(
        &mut self,
        params: &ExecParams,
        tx: &VerifiedTransaction,
        proposer: &Address,
    ) -> Result<Result<Receipt, TxError>, StoreError> {
        let signed = tx.signed();
        let sender = tx.sender();
        if signed.chain_id() != params.chain_id {
            return Ok(Err(TxError::WrongChainId {
                expected: params.chain_id,
                got: signed.chain_id(),
            }));
        }
        let fee = match signed.fee(params.min_fee) {
            Ok(fee) => fee,
            Err(e) => return Ok(Err(e)),
        };
        let mut from = self.get(&sender)?;
        let nonce = signed.nonce();
        if nonce != from.nonce {
            let (expected, got) = (from.nonce, nonce);
            return Ok(Err(if got < expected {
                TxError::NonceTooLow {
                    sender,
                    expected,
                    got,
                }
            } else {
                TxError::NonceGap {
                    sender,
                    expected,
                    got,
                }
            }));
        }
        let Some(cost) = signed.amount().checked_add(fee) else {
            return Ok(Err(TxError::CostOverflow));
        };
        if from.balance < cost {
            return Ok(Err(TxError::InsufficientBalance {
                sender,
                available: from.balance,
                needed: cost,
            }));
        }
        let governance = signed.as_governance();
        if let Some(gov) = governance {
            let state = self.governance.as_ref().unwrap_or(&self.base_governance);
            if let Err(e) = state.check(
                &params.governance,
                Some(self.height),
                sender,
                &gov.tx.action,
            ) {
                return Ok(Err(TxError::Governance(e)));
            }
        }
        from.balance -= cost;
        from.nonce += 1;
        // Stage the debit and the credits, then apply all or none. Credits
        // read through the staged values, so that transfers to oneself or
        // to the proposer add up.
        let mut staged = vec![(sender, from)];
        let recipient = signed.to().map(|to| (to, signed.amount()));
        for (address, credit) in recipient.into_iter().chain([(*proposer, fee)]) {
            let current = match staged.iter().find(|(a, _)| *a == address) {
                Some((_, account)) => *account,
                None => self.get(&address)?,
            };
            // Supply is bounded by genesis, so this cannot overflow; if it
            // ever could, refusing the tx keeps the state consistent.
            let Some(balance) = current.balance.checked_add(credit) else {
                return Ok(Err(TxError::BalanceOverflow));
            };
            let updated = Account { balance, ..current };
            match staged.iter_mut().find(|(a, _)| *a == address) {
                Some(slot) => slot.1 = updated,
                None => staged.push((address, updated)),
            }
        }
        if let Some(gov) = governance {
            let base = &self.base_governance;
            let state = self.governance.get_or_insert_with(|| (**base).clone());
            // Checked above, against this same state.
            if let Err(e) = state.apply(&params.governance, self.height, sender, &gov.tx.action) {
                return Ok(Err(TxError::Governance(e)));
            }
        }
        self.changed.extend(staged);
        Ok(Ok(Receipt {
            status: TxStatus::Success,
            fee_paid: fee,
        }))
    }

    fn into_changes(self) -> (Vec<(Address, Account)>, Option<GovernanceState>) {
        let mut changes: Vec<_> = self.changed.into_iter().collect();
        changes.sort_unstable_by_key(|(address, _)| *address);
        (changes, self.governance)
    }
}

/// Builds the next block on top of the store's tip from `candidates`, in the
/// order given, skipping any that are invalid against the state so far or
/// that would exceed the block limits. Returns the block and the skipped
/// transactions with their reasons (so the mempool can drop them).
pub fn build_block<'a>(
    store: &Store,
    params: &ExecParams,
    proposal: Proposal,
    candidates: impl IntoIterator<Item = &'a VerifiedTransaction>,
) -> Result<(ExecutedBlock, Vec<(Hash, TxError)>), StoreError> {
    let tip = store.tip()?;
    let height = tip.height + 1;
    let mut overlay = Overlay::new(store, height)?;
    let mut included: Vec<&VerifiedTransaction> = Vec::new();
    let mut receipts = Vec::new();
    let mut skipped = Vec::new();
    let mut bytes = 0usize;
    for tx in candidates {
        if included.len() == params.max_block_txs {
            break;
        }
        if bytes + tx.encoded_len() > params.max_block_bytes {
            continue;
        }
        match overlay.apply(params, tx, &proposal.proposer)? {
            Ok(receipt) => {
                bytes += tx.encoded_len();
                included.push(tx);
                receipts.push(receipt);
            }
            Err(error) => skipped.push((tx.hash(), error)),
        }
    }
    overlay.end_block(params);
    let (validators_hash, next_validators_hash) = overlay.validators_hashes();
    let (changes, governance) = overlay.into_changes();
    let (state_root, tree) = store.state_update(&changes, governance.as_ref(), height)?;
    let tx_hashes: Vec<Hash> = included.iter().map(|tx| tx.hash()).collect();
    let header = Header {
        chain_id: params.chain_id,
        height,
        time: proposal.time,
        prev_hash: tip.hash,
        tx_root: merkle_root(&tx_hashes),
        state_root,
        proposer: proposal.proposer,
        validators_hash,
        next_validators_hash,
        last_commit_hash: last_commit_hash(proposal.last_commit.as_ref()),
    };
    let block = Block {
        header,
        txs: included.iter().map(|tx| tx.signed().clone()).collect(),
        last_commit: proposal.last_commit,
    };
    let senders = included.iter().map(|tx| tx.sender()).collect();
    Ok((
        ExecutedBlock {
            block,
            receipts,
            tx_hashes,
            senders,
            changes,
            governance,
            tree,
        },
        skipped,
    ))
}

/// Re-executes a proposed block on top of the store's tip and checks
/// everything the ledger can: chain id, height, parent, limits, every
/// transaction, the transaction root, the last-commit hash and the state root.
/// Who proposed it, when, and whether its commit certificate is valid are
/// consensus questions, checked by the node.
///
/// `verify_tx` turns each transaction into a verified one, shared rather
/// than copied; pass [`SignedTransaction::verify`] or a lookup that reuses
/// the mempool's transactions (senders recovered at admission) and falls
/// back to verifying. It is called once per transaction, in block order.
pub fn verify_block(
    store: &Store,
    params: &ExecParams,
    block: Block,
    mut verify_tx: impl FnMut(&SignedTransaction) -> Result<Arc<VerifiedTransaction>, TxError>,
) -> Result<ExecutedBlock, BlockError> {
    let tip = store.tip()?;
    let header = &block.header;
    if header.chain_id != params.chain_id {
        return Err(BlockError::WrongChainId {
            expected: params.chain_id,
            got: header.chain_id,
        });
    }
    if header.height != tip.height + 1 {
        return Err(BlockError::WrongHeight {
            expected: tip.height + 1,
            got: header.height,
        });
    }
    if header.prev_hash != tip.hash {
        return Err(BlockError::WrongPrevHash {
            expected: tip.hash,
            got: header.prev_hash,
        });
    }
    if block.txs.len() > params.max_block_txs {
        return Err(BlockError::TooManyTxs {
            count: block.txs.len(),
            max: params.max_block_txs,
        });
    }
    let computed = last_commit_hash(block.last_commit.as_ref());
    if header.last_commit_hash != computed {
        return Err(BlockError::WrongLastCommitHash {
            computed,
            got: header.last_commit_hash,
        });
    }

    let mut overlay = Overlay::new(store, header.height)?;
    let (validators_hash, next_validators_hash) = overlay.validators_hashes();
    if (header.validators_hash, header.next_validators_hash)
        != (validators_hash, next_validators_hash)
    {
        return Err(BlockError::WrongValidatorsHash {
            expected: validators_hash,
            expected_next: next_validators_hash,
        });
    }
    let mut receipts = Vec::with_capacity(block.txs.len());
    let mut tx_hashes = Vec::with_capacity(block.txs.len());
    let mut senders = Vec::with_capacity(block.txs.len());
    let mut bytes = 0usize;
    for (index, signed) in block.txs.iter().enumerate() {
        let invalid = |hash, error| BlockError::InvalidTx { index, hash, error };
        let tx = verify_tx(signed).map_err(|error| invalid(signed.hash(), error))?;
        bytes += tx.encoded_len();
        if bytes > params.max_block_bytes {
            return Err(BlockError::TooManyBytes {
                bytes,
                max: params.max_block_bytes,
            });
        }
        let receipt = overlay
            .apply(params, &tx, &header.proposer)?
            .map_err(|error| invalid(tx.hash(), error))?;
        receipts.push(receipt);
        tx_hashes.push(tx.hash());
        senders.push(tx.sender());
    }
    let tx_root = merkle_root(&tx_hashes);
    if header.tx_root != tx_root {
        return Err(BlockError::WrongTxRoot {
            computed: tx_root,
            got: header.tx_root,
        });
    }
    overlay.end_block(params);
    let (changes, governance) = overlay.into_changes();
    let (state_root, tree) = store.state_update(&changes, governance.as_ref(), header.height)?;
    if header.state_root != state_root {
        return Err(BlockError::WrongStateRoot {
            computed: state_root,
            got: header.state_root,
        });
    }
    Ok(ExecutedBlock {
        block,
        receipts,
        tx_hashes,
        senders,
        changes,
        governance,
        tree,
    })
}
