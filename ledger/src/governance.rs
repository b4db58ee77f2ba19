//! Validator-set governance: the validators change their own set on chain.
//!
//! A validator **proposes** a change (add a validator, remove one, change
//! one's power, replace one's key) with a governance transaction; the others
//! **approve** it with theirs. Once validators holding more than 2/3 of the
//! power of the set of the block being executed have approved it, the change
//! is **enacted** at the end of that block, `H`, and the new set signs from
//! height `H + 2` ([`ACTIVATION_DELAY`], as in CometBFT): header `H + 1`
//! already commits to it (`next_validators_hash`), so every node knows the
//! set of each height before anyone votes with it. A proposal not enacted
//! by its expiry height is dropped.
//!
//! Rules that keep the chain alive, checked when a change is proposed and
//! again when it is enacted (the set may have changed in between):
//!
//! - the set never becomes empty, and never has fewer than
//!   `min_validators` members (4, or the genesis count if genesis had
//!   fewer), nor more than [`MAX_VALIDATORS`];
//! - **no change moves more than 1/3 of the total power**: the power added,
//!   removed or changed hands (a key replacement moves its validator's
//!   power) is at most a third of the total before the change. So any
//!   quorum of the new set holds more than 1/3 of the old set's power (for
//!   an addition of `p <= T/3`: `2(T+p)/3 - p >= 5T/9`), which is at least
//!   one correct validator of the old set: a node that trusts the old set
//!   can follow the change, as CometBFT's light client does at trust level
//!   1/3;
//! - at most one change is enacted per block, so consecutive sets differ
//!   by one change.
//!
//! A dev chain may name an `admin` in genesis: its proposals are enacted at
//! the end of their block without approvals and may move any power. **Not
//! for production**: that key alone controls the chain.
//!
//! The state lives in the state tree under one reserved key
//! ([`governance_key`]), so the state root, snapshots and proofs cover it.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::crypto::{Address, Hash, PublicKey, SecretKey, Signature, keccak256, keccak256_concat};

/// Blocks between the block that enacts a change and the first height the
/// new set signs.
pub const ACTIVATION_DELAY: u64 = 2;
/// Most validators in a set.
pub const MAX_VALIDATORS: usize = 100;
/// Longest validator name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Most proposals pending per proposer, and at once: room for every
/// validator's, so that no group of validators can fill the slots and lock
/// the others (or a fix of their own set) out.
pub const MAX_PENDING_PER_PROPOSER: usize = 2;
pub const MAX_PENDING: usize = MAX_PENDING_PER_PROPOSER * (MAX_VALIDATORS + 1);
/// Latest expiry a proposal may name, in blocks after its own.
pub const MAX_LIFETIME: u64 = 100_000;
/// Finished proposals (enacted, expired or failed) kept for the RPC.
pub const KEPT_FINISHED: usize = 32;
/// Upper bound on the total voting power (the consensus crate's bound).
pub const MAX_TOTAL_POWER: u64 = (i64::MAX / 8) as u64;

/// Domain tag of governance transactions' sign bytes: distinct from
/// transfers', so that no signature of one kind is valid for another.
pub const GOVERNANCE_SIGN_DOMAIN: &[u8] = b"tally/governance/v1";

/// The state tree key the governance state is stored under:
/// keccak256("tally/governance/state"). No account can have it (an
/// account's key is keccak256 of a 20-byte address).
pub fn governance_key() -> Hash {
    keccak256(b"tally/governance/state")
}

/// A validator as the chain records it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub address: Address,
    /// Compressed SEC1 public key; `address` is derived from it.
    #[serde(with = "key_hex")]
    pub public_key: [u8; 33],
    pub power: u64,
}

impl Member {
    /// A member for `key`'s validator.
    pub fn of_key(name: &str, key: &PublicKey, power: u64) -> Member {
        Member {
            name: name.to_string(),
            address: Address::from_public_key(key),
            public_key: key.to_compressed(),
            power,
        }
    }
}

/// The hash every header commits to for a set: keccak256 of the borsh
/// encoding of the (address, power) list in address order.
pub fn validators_hash(members: &[Member]) -> Hash {
    let list: Vec<(Address, u64)> = members.iter().map(|m| (m.address, m.power)).collect();
    keccak256(&borsh::to_vec(&list).expect("borsh encoding into a Vec cannot fail"))
}

/// One change to the set.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SetChange {
    Add {
        member: Member,
    },
    Remove {
        address: Address,
    },
    SetPower {
        address: Address,
        power: u64,
    },
    ReplaceKey {
        address: Address,
        #[serde(with = "key_hex")]
        public_key: [u8; 33],
    },
}

/// What a governance transaction does.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum GovernanceAction {
    /// Proposes `change`, to be enacted by the end of block `expires_at`
    /// or never. Counts as the proposer's approval.
    Propose { change: SetChange, expires_at: u64 },
    /// Approves pending proposal `id`.
    Approve { id: u64 },
}

/// An unsigned governance transaction; pays `fee` to the block's proposer
/// and uses the sender's nonce, as a transfer does.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct GovernanceTx {
    pub chain_id: u64,
    pub nonce: u64,
    #[serde(with = "crate::serde_u128")]
    pub fee: u128,
    pub action: GovernanceAction,
}

impl GovernanceTx {
    /// The prehash that is signed: keccak256(domain || borsh(tx)).
    pub fn sign_hash(&self) -> Hash {
        let body = borsh::to_vec(self).expect("borsh encoding into a Vec cannot fail");
        keccak256_concat(&[GOVERNANCE_SIGN_DOMAIN, &body])
    }

    pub fn sign(self, key: &SecretKey) -> crate::tx::SignedTransaction {
        let signature = key.sign_prehash(&self.sign_hash());
        crate::tx::SignedTransaction::Governance(SignedGovernanceTx {
            tx: self,
            signature,
        })
    }
}

/// A governance transaction with its recoverable signature.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedGovernanceTx {
    pub tx: GovernanceTx,
    pub signature: Signature,
}

/// Where a proposal stands.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ProposalStatus {
    Pending,
    /// Enacted at the end of block `height`; the new set signs from
    /// `effective`.
    Enacted {
        height: u64,
        effective: u64,
    },
    /// Not enacted by the end of block `height`, its expiry.
    Expired {
        height: u64,
    },
    /// Had its quorum at the end of block `height` but no longer fit the
    /// rules (the set had changed), or its proposer left the set.
    Failed {
        height: u64,
        reason: GovernanceError,
    },
}

/// A proposal and its approvals.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Proposal {
    pub id: u64,
    pub change: SetChange,
    pub proposer: Address,
    /// Proposed by the genesis admin (dev chains only).
    pub by_admin: bool,
    pub proposed_at: u64,
    pub expires_at: u64,
    /// Validators that approved, in order.
    pub approvals: Vec<Address>,
    pub status: ProposalStatus,
}

/// A set and the first height it signs.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Epoch {
    pub start: u64,
    /// Sorted by address.
    pub members: Vec<Member>,
}

/// The chain-wide governance rules (from genesis).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GovernanceParams {
    pub min_validators: usize,
    pub admin: Option<Address>,
}

impl GovernanceParams {
    /// The rules for a genesis with `validators` validators: at least 4, or
    /// as many as genesis had if fewer.
    pub fn for_genesis(validators: usize, admin: Option<Address>) -> GovernanceParams {
        GovernanceParams {
            min_validators: validators.clamp(1, 4),
            admin,
        }
    }
}

/// The governance state after a block: the sets that sign from the next
/// height on, and the proposals.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct GovernanceState {
    /// The set of the next height first, then any set enacted to start
    /// later (at most [`ACTIVATION_DELAY`] in all), by start height.
    pub epochs: Vec<Epoch>,
    /// Pending proposals, by id.
    pub pending: Vec<Proposal>,
    /// The latest finished proposals, oldest first.
    pub finished: Vec<Proposal>,
    pub next_id: u64,
}

/// Why a governance transaction or change is refused. Part of the state (a
/// failed proposal keeps its reason), so its borsh encoding is by variant
/// order: new variants go at the end.
#[derive(
    Debug, Error, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(tag = "error", content = "detail", rename_all = "snake_case")]
pub enum GovernanceError {
    #[error("{0} is not a validator: only validators propose and approve")]
    NotAValidator(Address),
    #[error("no pending proposal {0}")]
    UnknownProposal(u64),
    #[error("proposal {id} is no longer pending: {status}")]
    NotPending { id: u64, status: String },
    #[error("{0} already approved proposal {1}")]
    DuplicateApproval(Address, u64),
    #[error(
        "expiry height {expires_at} must lie after {height} and at most {MAX_LIFETIME} blocks after it"
    )]
    BadExpiry { height: u64, expires_at: u64 },
    #[error("{0} proposals are pending, the most there may be")]
    TooManyPending(usize),
    #[error("{0} has {MAX_PENDING_PER_PROPOSER} proposals pending, the most one proposer may have")]
    TooManyFromProposer(Address),
    #[error("{0} is already a validator")]
    AlreadyAValidator(Address),
    #[error("{0} is not in the validator set")]
    NotInSet(Address),
    #[error("public key does not give address {0}")]
    KeyMismatch(Address),
    #[error("invalid public key")]
    BadPublicKey,
    #[error("validator name is {0} bytes, more than {MAX_NAME_BYTES}")]
    NameTooLong(usize),
    #[error("voting power must be above zero")]
    ZeroPower,
    #[error("{address} already has power {power}")]
    SamePower { address: Address, power: u64 },
    #[error("the set would have {after} validators, fewer than the chain's minimum of {min}")]
    TooFewValidators { after: usize, min: usize },
    #[error("the set would have more than {MAX_VALIDATORS} validators")]
    TooManyValidators,
    #[error("total voting power would exceed {MAX_TOTAL_POWER}")]
    TooMuchPower,
    #[error(
        "the change moves {moved} of {total} voting power, more than a third (make it in smaller steps)"
    )]
    MovesTooMuch { moved: u64, total: u64 },
    #[error("its proposer {0} left the validator set")]
    ProposerLeft(Address),
}

impl GovernanceState {
    /// The state of a chain at genesis.
    pub fn genesis(mut members: Vec<Member>) -> GovernanceState {
        members.sort_by_key(|a| a.address);
        GovernanceState {
            epochs: vec![Epoch { start: 1, members }],
            pending: Vec::new(),
            finished: Vec::new(),
            next_id: 1,
        }
    }

    /// What every state the rules produce has, checked on one that came
    /// from elsewhere (a peer's snapshot chunk) before anything indexes it:
    /// one to three sets by rising start height, each within the limits,
    /// sorted by address without repeats, with positive powers.
    pub fn check_shape(&self) -> Result<(), String> {
        if self.epochs.is_empty() || self.epochs.len() > 1 + ACTIVATION_DELAY as usize {
            return Err(format!("{} validator sets", self.epochs.len()));
        }
        if self.epochs.windows(2).any(|w| w[0].start >= w[1].start) {
            return Err("validator sets out of order".into());
        }
        for epoch in &self.epochs {
            let members = &epoch.members;
            if members.is_empty() || members.len() > MAX_VALIDATORS {
                return Err(format!("a set of {} validators", members.len()));
            }
            if members.windows(2).any(|w| w[0].address >= w[1].address) {
                return Err("a set not sorted by address".into());
            }
            let total = members.iter().try_fold(0u64, |sum, m| {
                (m.power > 0).then(|| sum.checked_add(m.power))?
            });
            if total.is_none_or(|t| t > MAX_TOTAL_POWER) {
                return Err("a set with a zero or too large power".into());
            }
        }
        if self.pending.len() > MAX_PENDING || self.finished.len() > KEPT_FINISHED {
            return Err("too many proposals".into());
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("borsh encoding into a Vec cannot fail")
    }

    /// The set that signs `height`, for any height from the next one up to
    /// [`ACTIVATION_DELAY`] after the state's own.
    pub fn members_at(&self, height: u64) -> &[Member] {
        debug_assert!(
            height >= self.epochs[0].start,
            "height {height} is before the state's sets"
        );
        let epoch = self
            .epochs
            .iter()
            .rev()
            .find(|e| e.start <= height)
            .unwrap_or(&self.epochs[0]);
        &epoch.members
    }

    /// The latest set enacted, which a new change applies to.
    fn latest(&self) -> &[Member] {
        &self.epochs[self.epochs.len() - 1].members
    }

    /// Applies one governance action by `sender` in block `height`, or says
    /// why not and leaves the state untouched.
    pub fn apply(
        &mut self,
        params: &GovernanceParams,
        height: u64,
        sender: Address,
        action: &GovernanceAction,
    ) -> Result<(), GovernanceError> {
        self.check(params, Some(height), sender, action)?;
        match action {
            GovernanceAction::Propose { change, expires_at } => {
                let is_member = self.is_member(Some(height), &sender);
                let id = self.next_id;
                self.next_id += 1;
                self.pending.push(Proposal {
                    id,
                    change: change.clone(),
                    proposer: sender,
                    by_admin: params.admin == Some(sender),
                    proposed_at: height,
                    expires_at: *expires_at,
                    approvals: if is_member { vec![sender] } else { Vec::new() },
                    status: ProposalStatus::Pending,
                });
            }
            GovernanceAction::Approve { id } => {
                if let Some(proposal) = self.pending.iter_mut().find(|p| p.id == *id) {
                    proposal.approvals.push(sender);
                }
            }
        }
        Ok(())
    }

    fn is_member(&self, height: Option<u64>, address: &Address) -> bool {
        let members = match height {
            Some(height) => self.members_at(height),
            None => &self.epochs[0].members,
        };
        members.iter().any(|m| m.address == *address)
    }

    /// Why `action` by `sender` would not apply in block `height`, or (with
    /// `None`) in the next block, as far as this state tells without its
    /// height (the expiry is not checked): the mempool's check before it
    /// admits a governance transaction, so that one bound to fail takes no
    /// block space. Changes nothing.
    pub fn check(
        &self,
        params: &GovernanceParams,
        height: Option<u64>,
        sender: Address,
        action: &GovernanceAction,
    ) -> Result<(), GovernanceError> {
        let is_member = self.is_member(height, &sender);
        match action {
            GovernanceAction::Propose { change, expires_at } => {
                let by_admin = params.admin == Some(sender);
                if !is_member && !by_admin {
                    return Err(GovernanceError::NotAValidator(sender));
                }
                if let Some(height) = height {
                    if *expires_at <= height || *expires_at - height > MAX_LIFETIME {
                        return Err(GovernanceError::BadExpiry {
                            height,
                            expires_at: *expires_at,
                        });
                    }
                }
                if self.pending.len() >= MAX_PENDING {
                    return Err(GovernanceError::TooManyPending(self.pending.len()));
                }
                if self.pending.iter().filter(|p| p.proposer == sender).count()
                    >= MAX_PENDING_PER_PROPOSER
                {
                    return Err(GovernanceError::TooManyFromProposer(sender));
                }
                apply_change(self.latest(), change, params, by_admin).map(|_| ())
            }
            GovernanceAction::Approve { id } => {
                if !is_member {
                    return Err(GovernanceError::NotAValidator(sender));
                }
                let Some(proposal) = self.pending.iter().find(|p| p.id == *id) else {
                    return Err(match self.finished.iter().find(|p| p.id == *id) {
                        Some(done) => GovernanceError::NotPending {
                            id: *id,
                            status: status_words(&done.status),
                        },
                        None => GovernanceError::UnknownProposal(*id),
                    });
                };
                if proposal.approvals.contains(&sender) {
                    return Err(GovernanceError::DuplicateApproval(sender, *id));
                }
                Ok(())
            }
        }
    }

    /// The end of block `height`: enacts the first pending proposal (by id)
    /// with its quorum in this height's set, expires those whose expiry is
    /// this height, and drops the set this height signed with if a later
    /// one takes over. Returns whether anything changed.
    pub fn end_block(&mut self, params: &GovernanceParams, height: u64) -> bool {
        let mut changed = false;
        let signing = self.members_at(height).to_vec();
        let total: u64 = signing.iter().map(|m| m.power).sum();
        let approved = |p: &Proposal| {
            let power: u64 = signing
                .iter()
                .filter(|m| p.approvals.contains(&m.address))
                .map(|m| m.power)
                .sum();
            p.by_admin || 3 * u128::from(power) > 2 * u128::from(total)
        };
        if let Some(index) = self.pending.iter().position(approved) {
            let mut proposal = self.pending.remove(index);
            proposal.status =
                match apply_change(self.latest(), &proposal.change, params, proposal.by_admin) {
                    Ok(members) => {
                        let effective = height + ACTIVATION_DELAY;
                        self.epochs.push(Epoch {
                            start: effective,
                            members,
                        });
                        ProposalStatus::Enacted { height, effective }
                    }
                    Err(reason) => ProposalStatus::Failed { height, reason },
                };
            self.finish(proposal);
            changed = true;
        }
        while let Some(index) = self.pending.iter().position(|p| p.expires_at <= height) {
            let mut proposal = self.pending.remove(index);
            proposal.status = ProposalStatus::Expired { height };
            self.finish(proposal);
            changed = true;
        }
        while self.epochs.len() > 1 && self.epochs[1].start <= height + 1 {
            self.epochs.remove(0);
            changed = true;
        }
        // A proposer that left the set gives its slots back.
        while let Some(index) = self.pending.iter().position(|p| {
            !p.by_admin
                && !self.epochs[0]
                    .members
                    .iter()
                    .any(|m| m.address == p.proposer)
        }) {
            let mut proposal = self.pending.remove(index);
            proposal.status = ProposalStatus::Failed {
                height,
                reason: GovernanceError::ProposerLeft(proposal.proposer),
            };
            self.finish(proposal);
            changed = true;
        }
        changed
    }

    fn finish(&mut self, proposal: Proposal) {
        self.finished.push(proposal);
        if self.finished.len() > KEPT_FINISHED {
            self.finished.remove(0);
        }
    }
}

fn status_words(status: &ProposalStatus) -> String {
    match status {
        ProposalStatus::Pending => "pending".into(),
        ProposalStatus::Enacted { height, effective } => {
            format!("enacted in block {height}, effective from {effective}")
        }
        ProposalStatus::Expired { height } => format!("expired at {height}"),
        ProposalStatus::Failed { height, reason } => format!("failed at {height}: {reason}"),
    }
}

fn check_key(address: &Address, public_key: &[u8; 33]) -> Result<(), GovernanceError> {
    let key = PublicKey::from_sec1(public_key).map_err(|_| GovernanceError::BadPublicKey)?;
    if Address::from_public_key(&key) != *address {
        return Err(GovernanceError::KeyMismatch(*address));
    }
    Ok(())
}

/// The set `members` becomes under `change`, or why the change is refused.
/// `unbounded` (the dev admin) lifts the one-third limit only.
pub fn apply_change(
    members: &[Member],
    change: &SetChange,
    params: &GovernanceParams,
    unbounded: bool,
) -> Result<Vec<Member>, GovernanceError> {
    let total: u64 = members.iter().map(|m| m.power).sum();
    let find = |address: &Address| {
        members
            .iter()
            .position(|m| m.address == *address)
            .ok_or(GovernanceError::NotInSet(*address))
    };
    let mut next = members.to_vec();
    let moved = match change {
        SetChange::Add { member } => {
            if members.iter().any(|m| m.address == member.address) {
                return Err(GovernanceError::AlreadyAValidator(member.address));
            }
            check_key(&member.address, &member.public_key)?;
            if member.name.len() > MAX_NAME_BYTES {
                return Err(GovernanceError::NameTooLong(member.name.len()));
            }
            if member.power == 0 {
                return Err(GovernanceError::ZeroPower);
            }
            next.push(member.clone());
            member.power
        }
        SetChange::Remove { address } => {
            let index = find(address)?;
            next.remove(index).power
        }
        SetChange::SetPower { address, power } => {
            let index = find(address)?;
            let old = next[index].power;
            if *power == 0 {
                return Err(GovernanceError::ZeroPower);
            }
            if *power == old {
                return Err(GovernanceError::SamePower {
                    address: *address,
                    power: old,
                });
            }
            next[index].power = *power;
            old.abs_diff(*power)
        }
        SetChange::ReplaceKey {
            address,
            public_key,
        } => {
            let index = find(address)?;
            let key =
                PublicKey::from_sec1(public_key).map_err(|_| GovernanceError::BadPublicKey)?;
            let new_address = Address::from_public_key(&key);
            if members.iter().any(|m| m.address == new_address) {
                return Err(GovernanceError::AlreadyAValidator(new_address));
            }
            next[index].address = new_address;
            next[index].public_key = *public_key;
            next[index].power
        }
    };
    let min = params.min_validators.max(1);
    if next.len() < min {
        return Err(GovernanceError::TooFewValidators {
            after: next.len(),
            min,
        });
    }
    if next.len() > MAX_VALIDATORS {
        return Err(GovernanceError::TooManyValidators);
    }
    let new_total = next
        .iter()
        .try_fold(0u64, |sum, m| sum.checked_add(m.power))
        .filter(|t| *t <= MAX_TOTAL_POWER)
        .ok_or(GovernanceError::TooMuchPower)?;
    debug_assert!(new_total > 0);
    if !unbounded && 3 * u128::from(moved) > u128::from(total) {
        return Err(GovernanceError::MovesTooMuch { moved, total });
    }
    next.sort_by_key(|a| a.address);
    Ok(next)
}

/// Serde for a compressed public key as `0x` hex.
mod key_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 33], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("0x{}", hex::encode(bytes)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 33], D::Error> {
        let s = <std::borrow::Cow<'de, str> as Deserialize>::deserialize(d)?;
        let bytes =
            hex::decode(s.strip_prefix("0x").unwrap_or(&s)).map_err(serde::de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("a compressed public key is 33 bytes"))
    }
}
