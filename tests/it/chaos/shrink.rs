//! Running a sequence (plain or sabotaged), shrinking a finding to a minimal sequence, and the
//! report with its replay line.

use super::*;

/// Run `steps` in a fresh world; the first finding, if any. A finding of a kind named in
/// `LITEVAULT_CHAOS_IGNORE` (substrings, `;`-separated) ends the sequence as a pass, to look past
/// a known bug for others.
pub(super) fn run_steps(setup: &Setup, steps: &[Step], verbose: bool) -> Option<Finding> {
    run_sabotaged(setup, steps, verbose, None)
}

/// What the sabotage test tells the model wrongly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sabotage {
    /// Each backup is recorded as holding a row it never held.
    Content,
    /// A fault is done but the model is not told.
    HideHarm,
    /// The model is told of a fault that is not done.
    FalseHarm,
    /// The retention model says prune may delete nothing.
    Policy,
}

pub(super) fn run_sabotaged(
    setup: &Setup,
    steps: &[Step],
    verbose: bool,
    sabotage: Option<Sabotage>,
) -> Option<Finding> {
    let mut w = World::new(setup, verbose);
    w.sabotage = sabotage;
    let found = |f: Finding| {
        let ignored = std::env::var("LITEVAULT_CHAOS_IGNORE").unwrap_or_default();
        let skip = ignored
            .split(';')
            .any(|i| !i.trim().is_empty() && f.category.contains(i.trim()));
        if verbose || skip {
            eprintln!(
                "    finding{}: {}: {}",
                if skip { " (ignored)" } else { "" },
                f.category,
                f.detail
            );
        }
        (!skip).then_some(f)
    };
    for (i, step) in steps.iter().enumerate() {
        w.at = i;
        if verbose {
            eprintln!("  [{i}] {step}");
        }
        if let Err(f) = w.step(step) {
            return found(f);
        }
    }
    w.at = steps.len();
    w.final_sweep().err().and_then(found)
}

/// Drop steps while the same kind of finding remains: chunks of half the steps, then smaller,
/// down to one at a time (delta debugging). Returns the indices kept and the finding.
pub(super) fn shrink(setup: &Setup, steps: &[Step], first: Finding) -> (Vec<usize>, Finding) {
    let mut keep: Vec<usize> = (0..=first.step.min(steps.len() - 1)).collect();
    let mut finding = first;
    let same = |f: &Option<Finding>, cat: &str| f.as_ref().is_some_and(|f| f.category == cat);
    let mut chunk = keep.len().div_ceil(2).max(1);
    loop {
        let mut progress = false;
        let mut start = 0;
        while start < keep.len() {
            let end = (start + chunk).min(keep.len());
            let mut trial = keep.clone();
            trial.drain(start..end);
            if trial.is_empty() {
                start = end;
                continue;
            }
            let run: Vec<Step> = trial.iter().map(|i| steps[*i].clone()).collect();
            let got = run_steps(setup, &run, false);
            if same(&got, &finding.category) {
                let f = got.unwrap();
                trial.truncate((f.step + 1).min(trial.len()));
                keep = trial;
                finding = f;
                progress = true;
            } else {
                start = end;
            }
        }
        if chunk == 1 && !progress {
            break;
        }
        if !progress {
            chunk = (chunk / 2).max(1);
        }
    }
    (keep, finding)
}

pub(super) fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

pub(super) struct Report {
    pub(super) seed: u64,
    pub(super) steps: Vec<String>,
    pub(super) keep: Vec<usize>,
    pub(super) finding: Finding,
}

pub(super) fn run_seed(seed: u64, keep_only: Option<&[usize]>, verbose: bool) -> Option<Report> {
    let (setup, steps) = generate(seed);
    let chosen: Vec<usize> = match keep_only {
        Some(k) => k.iter().copied().filter(|i| *i < steps.len()).collect(),
        None => (0..steps.len()).collect(),
    };
    let run: Vec<Step> = chosen.iter().map(|i| steps[*i].clone()).collect();
    let finding = run_steps(&setup, &run, verbose)?;
    let text: Vec<String> = steps.iter().map(|s| s.to_string()).collect();
    if keep_only.is_some() {
        let keep = chosen;
        return Some(Report {
            seed,
            steps: text,
            keep,
            finding,
        });
    }
    eprintln!(
        "chaos: seed {seed} found: {} ({}); shrinking {} steps",
        finding.category,
        finding.detail,
        run.len()
    );
    let (keep, finding) = shrink(&setup, &steps, finding);
    Some(Report {
        seed,
        steps: text,
        keep,
        finding,
    })
}

pub(super) fn render(r: &Report, setup: &Setup) -> String {
    let mut s = format!(
        "seed {}: {}\n  {}\n  setup: {:?}\n  minimal sequence ({} of {} steps):\n",
        r.seed,
        r.finding.category,
        r.finding.detail,
        setup,
        r.keep.len(),
        r.steps.len()
    );
    for (n, i) in r.keep.iter().enumerate() {
        let mark = if n == r.finding.step {
            "   <- found after this step"
        } else {
            ""
        };
        s.push_str(&format!("    [{i}] {}{mark}\n", r.steps[*i]));
    }
    if r.finding.step >= r.keep.len() {
        s.push_str("    (found by the final sweep)\n");
    }
    s.push_str(&format!(
        "  replay: LITEVAULT_CHAOS_SEED={} LITEVAULT_CHAOS_KEEP={} LITEVAULT_CHAOS_VERBOSE=1 cargo test --test it chaos -- --nocapture\n",
        r.seed,
        r.keep
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    ));
    s
}
