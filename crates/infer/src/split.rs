//! Running a batch so that each job keeps its own result: when a batch fails (out of memory,
//! or one bad input poisoning the pass), halve it and retry each half, down to single jobs.

use crate::InferError;

/// Runs `items` through `run` (which returns one output per item, in order). On failure the
/// batch is split in two and each half retried, recursively; a single item's failure is its own.
/// Returns one result per item, in order, and the sizes of the passes that ran.
pub(crate) fn run_splitting<T, R>(
    items: &[T],
    run: &mut impl FnMut(&[T]) -> Result<Vec<R>, InferError>,
    passes: &mut Vec<usize>,
) -> Vec<Result<R, InferError>> {
    if items.is_empty() {
        return Vec::new();
    }
    passes.push(items.len());
    match run(items) {
        Ok(outputs) if outputs.len() == items.len() => outputs.into_iter().map(Ok).collect(),
        Ok(outputs) => {
            let message = format!(
                "model returned {} results for {} inputs",
                outputs.len(),
                items.len()
            );
            items
                .iter()
                .map(|_| {
                    Err(InferError::new(
                        crate::InferErrorKind::ModelError,
                        message.clone(),
                    ))
                })
                .collect()
        }
        Err(err) if items.len() == 1 => vec![Err(err)],
        Err(_) => {
            let (left, right) = items.split_at(items.len() / 2);
            let mut results = run_splitting(left, run, passes);
            results.extend(run_splitting(right, run, passes));
            results
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InferErrorKind;

    fn oom() -> InferError {
        InferError::new(InferErrorKind::OutOfMemory, "CUDA out of memory")
    }

    #[test]
    fn an_oversized_batch_is_halved_until_it_fits() {
        let items: Vec<u32> = (0..8).collect();
        let mut passes = Vec::new();
        let results = run_splitting(
            &items,
            &mut |batch: &[u32]| {
                if batch.len() > 2 {
                    Err(oom())
                } else {
                    Ok(batch.iter().map(|x| x * 10).collect())
                }
            },
            &mut passes,
        );
        let values: Vec<u32> = results
            .into_iter()
            .map(|r| r.expect("fits once split"))
            .collect();
        assert_eq!(values, (0..8).map(|x| x * 10).collect::<Vec<_>>());
        assert_eq!(passes, [8, 4, 2, 2, 4, 2, 2]);
    }

    #[test]
    fn one_bad_input_fails_alone() {
        let items: Vec<u32> = (0..5).collect();
        let mut passes = Vec::new();
        let results = run_splitting(
            &items,
            &mut |batch: &[u32]| {
                if batch.contains(&3) {
                    Err(InferError::new(InferErrorKind::ModelError, "nan"))
                } else {
                    Ok(batch.to_vec())
                }
            },
            &mut passes,
        );
        for (item, result) in items.iter().zip(&results) {
            assert_eq!(result.is_err(), *item == 3, "item {item}: {result:?}");
        }
    }

    #[test]
    fn out_of_memory_at_batch_one_is_reported() {
        let mut passes = Vec::new();
        let results = run_splitting(
            &[1u8],
            &mut |_: &[u8]| Err::<Vec<u8>, _>(oom()),
            &mut passes,
        );
        assert_eq!(
            results[0].as_ref().expect_err("oom").kind,
            InferErrorKind::OutOfMemory
        );
    }
}
