//! `verify_certificate` and `Evidence::verify`: checkable by anyone against
//! the validator set alone.

use tally_consensus::{
    Action, CertificateError, CommitCertificate, Consensus, Evidence, Validator, ValidatorSet,
    verify_certificate,
};

use crate::sim::scheme::{Addr, Sig, TestScheme, Val};
use crate::support::*;

fn cert(h: u64, r: u32, value: Val, signers: &[Addr]) -> CommitCertificate<Addr, Val, Sig> {
    certificate(h, r, value, signers)
}

fn check(
    set: &ValidatorSet<Addr>,
    c: &CommitCertificate<Addr, Val, Sig>,
) -> Result<u64, CertificateError> {
    verify_certificate(&TestScheme, CHAIN, set, 3, &v(1), c)
}

#[test]
fn accepts_a_quorum_of_valid_precommits() {
    let set = validators(4);
    assert_eq!(check(&set, &cert(3, 2, v(1), &[0, 1, 3])), Ok(3));
    assert_eq!(check(&set, &cert(3, 2, v(1), &[0, 1, 2, 3])), Ok(4));
}

#[test]
fn rejects_what_it_must() {
    let set = validators(4);
    let good = cert(3, 2, v(1), &[0, 1, 3]);

    assert_eq!(
        check(&set, &cert(3, 2, v(1), &[0, 1])),
        Err(CertificateError::InsufficientPower { power: 2, total: 4 }),
        "too little power"
    );
    assert_eq!(
        check(&set, &cert(3, 2, v(1), &[])),
        Err(CertificateError::InsufficientPower { power: 0, total: 4 }),
        "empty"
    );
    assert_eq!(
        verify_certificate(&TestScheme, CHAIN, &set, 4, &v(1), &good),
        Err(CertificateError::WrongHeight {
            expected: 4,
            found: 3
        }),
        "wrong height"
    );
    assert_eq!(
        verify_certificate(&TestScheme, CHAIN, &set, 3, &v(2), &good),
        Err(CertificateError::WrongValue),
        "wrong value"
    );
    let mut other_round = good.clone();
    other_round.round = 1;
    assert_eq!(
        check(&set, &other_round),
        Err(CertificateError::BadSignature { index: 0 }),
        "a round the signatures are not for"
    );
    let mut other_value = good.clone();
    other_value.value = v(2);
    assert_eq!(
        verify_certificate(&TestScheme, CHAIN, &set, 3, &v(2), &other_value),
        Err(CertificateError::BadSignature { index: 0 }),
        "a value the signatures are not for"
    );
    let mut unknown = good.clone();
    unknown
        .signatures
        .push((9, precommit(9, 3, 2, Some(v(1))).signature));
    assert_eq!(
        check(&set, &unknown),
        Err(CertificateError::UnknownSigner { index: 3 }),
        "unknown signer"
    );
    let mut duplicate = cert(3, 2, v(1), &[0, 1]);
    duplicate.signatures.push(duplicate.signatures[1]);
    assert_eq!(
        check(&set, &duplicate),
        Err(CertificateError::DuplicateSigner { index: 2 }),
        "the same signer twice does not make a quorum"
    );
    assert_eq!(
        check(&set, &cert(3, 2, v(1), &[1, 0, 3])),
        Err(CertificateError::UnsortedSigners { index: 1 }),
        "one set of signers has one encoding: sorted by address"
    );
    assert_eq!(
        check(&set, &cert(3, 2, v(1), &[0, 1, 3, 0])),
        Err(CertificateError::UnsortedSigners { index: 3 }),
        "a repeat out of order"
    );
    let mut bad = good.clone();
    bad.signatures[2].1 ^= 1;
    assert_eq!(
        check(&set, &bad),
        Err(CertificateError::BadSignature { index: 2 }),
        "bad signature"
    );
    let mut nil = good;
    nil.signatures[1].1 = precommit(1, 3, 2, None).signature;
    assert_eq!(
        check(&set, &nil),
        Err(CertificateError::BadSignature { index: 1 }),
        "a nil precommit is not a precommit for the value"
    );
    assert_eq!(
        verify_certificate(
            &TestScheme,
            CHAIN + 1,
            &set,
            3,
            &v(1),
            &cert(3, 2, v(1), &[0, 1, 3])
        ),
        Err(CertificateError::BadSignature { index: 0 }),
        "signatures of another chain"
    );
}

#[test]
fn counts_voting_power_not_heads() {
    let set = ValidatorSet::new(
        [5, 3, 1, 1]
            .iter()
            .enumerate()
            .map(|(i, p)| Validator {
                address: i as Addr,
                power: *p,
            })
            .collect(),
    )
    .expect("valid set");
    // Total 10: a quorum needs 7.
    assert_eq!(check(&set, &cert(3, 0, v(1), &[0, 2, 3])), Ok(7));
    assert_eq!(
        check(&set, &cert(3, 0, v(1), &[1, 2, 3])),
        Err(CertificateError::InsufficientPower {
            power: 5,
            total: 10
        })
    );
    assert_eq!(
        check(&set, &cert(3, 0, v(1), &[0, 2])),
        Err(CertificateError::InsufficientPower {
            power: 6,
            total: 10
        })
    );
}

#[test]
fn evidence_checks_out_only_when_it_is_real() {
    let a = prevote(2, 1, 0, Some(v(1)));
    let b = prevote(2, 1, 0, None);
    let real = Evidence::DuplicateVote {
        first: a.clone(),
        second: b.clone(),
    };
    assert!(real.verify(&TestScheme, CHAIN));
    assert_eq!(*real.offender(), 2);
    let same = Evidence::DuplicateVote {
        first: a.clone(),
        second: a.clone(),
    };
    assert!(
        !same.verify(&TestScheme, CHAIN),
        "identical votes prove nothing"
    );
    let two_rounds = Evidence::DuplicateVote {
        first: a.clone(),
        second: prevote(2, 1, 1, None),
    };
    assert!(!two_rounds.verify(&TestScheme, CHAIN));
    let two_signers = Evidence::DuplicateVote {
        first: a.clone(),
        second: prevote(3, 1, 0, None),
    };
    assert!(!two_signers.verify(&TestScheme, CHAIN));
    let mut forged = b;
    forged.signature ^= 1;
    let forged = Evidence::DuplicateVote {
        first: a,
        second: forged,
    };
    assert!(!forged.verify(&TestScheme, CHAIN));
    let proposals = Evidence::DuplicateProposal {
        first: signed_proposal(0, 1, 0, v(1), None),
        second: signed_proposal(0, 1, 0, v(2), None),
    };
    assert!(proposals.verify(&TestScheme, CHAIN));
}

#[test]
fn a_decided_certificate_lists_its_signers_in_address_order() {
    // An observer; validator 0 precommits nil, then (equivocating) v1: its
    // second precommit counts for v1 and is stored after the first votes.
    let mut m = Consensus::new(config(), TestScheme, None);
    m.handle(start(1));
    m.handle(ev_proposal(signed_proposal(0, 1, 0, v(1), None)));
    m.handle(verified(1, v(1), true));
    m.handle(ev_vote(precommit(0, 1, 0, None)));
    let evidence = m.handle(ev_vote(precommit(0, 1, 0, Some(v(1)))));
    assert!(matches!(
        evidence.as_slice(),
        [Action::ReportEvidence(Evidence::DuplicateVote { .. })]
    ));
    m.handle(ev_vote(precommit(2, 1, 0, Some(v(1)))));
    assert_eq!(
        m.handle(ev_vote(precommit(3, 1, 0, Some(v(1))))),
        vec![decide(1, 0, v(1), &[0, 2, 3])],
        "L49-51 with signers sorted by address"
    );
    let certificate = m.decision().expect("decided");
    assert_eq!(
        verify_certificate(&TestScheme, CHAIN, &validators(4), 1, &v(1), certificate),
        Ok(3)
    );
}
