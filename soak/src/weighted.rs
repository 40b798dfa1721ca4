//! A random choice among weighted options, from the soak's seeded
//! generators (the load's operations, the injector's faults).

/// One of `choices`, each as likely as its weight (not all zero).
pub fn pick<T: Copy>(rng: &mut fastrand::Rng, choices: &[(T, u32)]) -> T {
    let total: u32 = choices.iter().map(|(_, w)| w).sum();
    let mut n = rng.u32(0..total);
    for &(choice, weight) in choices {
        if n < weight {
            return choice;
        }
        n -= weight;
    }
    unreachable!("n is below the sum of the weights")
}
