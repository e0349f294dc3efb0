/*
 * fuzz_dataset.h -- checks every data-set harness makes on what a loader
 * returned: the loader's status, then, for a loaded set, that its size, shape,
 * features, labels and targets agree and can be read in full.
 */
#ifndef DL_FUZZ_DATASET_H
#define DL_FUZZ_DATASET_H

#include "fuzz_common.h"

static void fuzz_check_dataset(int status, dl_dataset *d, const char *call) {
    fuzz_check_status(status, call);
    if (status != DL_OK) {
        if (d != NULL) fuzz_fail("%s failed (%d) but set out", call, status);
        if (dl_last_error()[0] == '\0') fuzz_fail("%s failed (%d) without a message", call, status);
        return;
    }
    if (d == NULL) fuzz_fail("%s returned DL_OK and no data set", call);
    size_t count = 0, features = 0, dims[32], ndim = 0, target_size = 0;
    int has_labels = -1;
    if (dl_dataset_info(d, &count, &features, &has_labels) != DL_OK) fuzz_fail("dl_dataset_info failed");
    if (count == 0 || features == 0) fuzz_fail("a loaded data set of %zu samples of %zu features", count, features);
    if (dl_dataset_sample_shape(d, dims, 32, &ndim) != DL_OK) fuzz_fail("dl_dataset_sample_shape failed");
    size_t product = 1;
    for (size_t i = 0; i < ndim; i++) product *= dims[i];
    if (ndim == 0 || product != features) fuzz_fail("sample shape of %zu dims, product %zu, features %zu", ndim, product, features);
    const float *x = NULL;
    if (dl_dataset_features(d, &x) != DL_OK || x == NULL) fuzz_fail("dl_dataset_features failed");
    if (features > SIZE_MAX / count) fuzz_fail("count * feature_size overflows");
    float sum = fuzz_touch_floats(x, count * features);
    if (!isfinite(sum) && count * features < 1000) {
        for (size_t i = 0; i < count * features; i++)
            if (!isfinite(x[i])) fuzz_fail("feature %zu is %g", i, x[i]);
    }
    const int32_t *labels = NULL;
    int labelled = dl_dataset_labels(d, &labels) == DL_OK;
    if (labelled != (has_labels == 1)) fuzz_fail("dl_dataset_labels and has_labels disagree");
    if (labelled)
        for (size_t i = 0; i < count; i++)
            if (labels[i] < 0) fuzz_fail("label %zu is %d", i, labels[i]);
    const float *targets = NULL;
    if (dl_dataset_targets(d, &targets, &target_size) != DL_OK) fuzz_fail("dl_dataset_targets failed");
    if ((targets != NULL) != (target_size > 0)) fuzz_fail("targets %p with target_size %zu", (const void *)targets, target_size);
    if (targets != NULL) {
        if (labelled) fuzz_fail("a data set with both labels and targets");
        for (size_t i = 0; i < count * target_size; i++)
            if (!isfinite(targets[i])) fuzz_fail("target %zu is %g", i, targets[i]);
    }
    double mean = 0, std = 0;
    status = dl_dataset_standardizer(d, 1.0 / 255, &mean, &std);
    fuzz_check_status(status, "dl_dataset_standardizer");
    if (status == DL_OK && (!isfinite(mean) || !isfinite(std) || !(std > 0)))
        fuzz_fail("dl_dataset_standardizer gave mean %g, std %g", mean, std);
    dl_dataset_free(d);
}

#endif /* DL_FUZZ_DATASET_H */
