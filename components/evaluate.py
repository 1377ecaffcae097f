"""Components of ``extract_features``, ``linear_eval`` and ``report``."""

from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output


def extract_features(encoder: Input[Model], stats: Input[Dataset], train: Input[Dataset],
                     val: Input[Dataset], test: Input[Dataset], model_config: dict, eval_config: dict,
                     pretrain_config: dict, arch: str, run_name: str, job_name: str, metrics_config: dict,
                     features: Output[Dataset]):
    """Encode every image once with the frozen encoder (no projection head).

    Args:
        encoder: the pretrained encoder.
        stats: normalisation statistics.
        train: the train split.
        val: the validation split.
        test: the test split.
        model_config: the ``model`` config section (to rebuild the encoder).
        eval_config: the ``eval`` config section (extraction batch size).
        pretrain_config: the ``pretrain`` config section (device).
        arch: the encoder architecture used in pretraining.
        run_name: the run's name ('' = the KFP run's own name).
        job_name: the KFP run's name (filled in by the pipeline).
        metrics_config: the ``metrics`` config section.
        features: float32 features and labels of the three splits.
    """
    from kubeclr.steps import evaluate, runtime

    runtime.run_step("extract_features", run_name or job_name, evaluate.extract_features,
                     {"model": model_config, "eval": eval_config, "pretrain": pretrain_config,
                      "metrics": metrics_config},
                     {"model.arch": arch},
                     encoder.path, stats.path, train.path, val.path, test.path, features.path)


def linear_eval(features: Input[Dataset], encoder: Input[Model], stats: Input[Dataset],
                train: Input[Dataset], val: Input[Dataset], test: Input[Dataset],
                data_config: dict, model_config: dict, augment_config: dict, pretrain_config: dict,
                eval_config: dict, arch: str, run_name: str, job_name: str, metrics_config: dict,
                metrics: Output[Metrics], confusion: Output[ClassificationMetrics], classifier: Output[Model],
                results: Output[Dataset]):
    """Linear evaluation (logistic regression on frozen features) and kNN accuracy.

    Args:
        features: features from ``extract_features`` (the default protocol).
        encoder: the encoder (the ``seed`` protocol trains on top of it).
        stats: normalisation statistics (``seed`` protocol).
        train: the train split (``seed`` protocol).
        val: the validation split (``seed`` protocol).
        test: the test split (``seed`` protocol).
        data_config: the ``data`` config section (its seed drives the ``seed`` protocol).
        model_config: the ``model`` config section.
        augment_config: the ``augment`` config section (``seed`` protocol crops).
        pretrain_config: the ``pretrain`` config section (device, seed).
        eval_config: the ``eval`` config section (protocol, L2 grid, kNN k).
        arch: the encoder architecture.
        run_name: the run's name ('' = the KFP run's own name).
        job_name: the KFP run's name (filled in by the pipeline).
        metrics_config: the ``metrics`` config section.
        metrics: val/test top-1 and top-5 and kNN top-1, shown on the run page.
        confusion: the test confusion matrix with class names.
        classifier: the linear classifier's weights.
        results: every number above as JSON, for the report.
    """
    from kubeclr.steps import evaluate, runtime

    out = runtime.run_step("linear_eval", run_name or job_name, evaluate.linear_eval,
                           {"data": data_config, "model": model_config, "augment": augment_config,
                            "pretrain": pretrain_config, "eval": eval_config, "metrics": metrics_config},
                           {"model.arch": arch}, features.path, results.path, classifier.path,
                           encoder_path=encoder.path, stats_path=stats.path, train_path=train.path,
                           val_path=val.path, test_path=test.path)
    runtime.log_linear_eval(out, metrics, confusion)


def report(train: Input[Dataset], val: Input[Dataset], test: Input[Dataset], stats: Input[Dataset],
           history: Input[Dataset], features: Input[Dataset], results: Input[Dataset], encoder: Input[Model],
           data_config: dict, model_config: dict, augment_config: dict, pretrain_config: dict,
           eval_config: dict, metrics_config: dict, cifar_source: str, cifar_md5: str, arch: str,
           epochs: int, batch_size: int, lr: float, temperature: float, checkpoint_uri: str,
           mirror_uri: str, export_uri: str, run_name: str, job_name: str,
           html: Output[HTML], summary: Output[Markdown], metrics_json: Output[Dataset],
           metrics: Output[Metrics]):
    """The HTML report, the Markdown summary and ``metrics.json``.

    The report shows the whole config the run used, so this step receives
    every section and every run parameter.

    Args:
        train: the train split (sizes, source).
        val: the validation split.
        test: the test split (t-SNE points).
        stats: normalisation statistics.
        history: pretraining history (loss and lr curves, throughput).
        features: encoder features (t-SNE).
        results: linear evaluation and kNN results.
        encoder: the encoder (exported with the report when export_uri is set).
        data_config: the ``data`` config section.
        model_config: the ``model`` config section.
        augment_config: the ``augment`` config section.
        pretrain_config: the ``pretrain`` config section.
        eval_config: the ``eval`` config section (t-SNE points).
        metrics_config: the ``metrics`` config section.
        cifar_source: the dataset source of the run.
        cifar_md5: the expected MD5 of the run.
        arch: the encoder architecture.
        epochs: pretraining epochs.
        batch_size: global pretraining batch size.
        lr: base learning rate.
        temperature: NT-Xent temperature.
        checkpoint_uri: the checkpoint prefix of the run.
        mirror_uri: the dataset mirror of the run.
        export_uri: copy encoder, report and metrics.json under
            ``<export_uri>/<run_name>/`` ('' = off).
        run_name: the run's name, shown in the report ('' = the KFP run's own name).
        job_name: the KFP run's name (filled in by the pipeline).
        html: the self-contained report, rendered on the run page.
        summary: the Markdown summary, rendered on the run page.
        metrics_json: ``metrics.json`` (schema in DESIGN.md).
        metrics: headline scalars (accuracy, loss, throughput) for the run page.
    """
    from kubeclr.steps import export, runtime

    out = runtime.run_step("report", run_name or job_name, export.report_and_export,
                           {"data": data_config, "model": model_config, "augment": augment_config,
                            "pretrain": pretrain_config, "eval": eval_config, "metrics": metrics_config},
                           {"data.source": cifar_source, "data.md5": cifar_md5, "model.arch": arch,
                            "pretrain.epochs": epochs, "pretrain.batch_size": batch_size, "pretrain.lr": lr,
                            "pretrain.temperature": temperature, "storage.checkpoint_uri": checkpoint_uri,
                            "storage.mirror_uri": mirror_uri, "storage.export_uri": export_uri},
                           run_name=run_name or job_name, encoder_path=encoder.path, train_path=train.path,
                           val_path=val.path, test_path=test.path, stats_path=stats.path,
                           history_path=history.path, features_path=features.path, results_path=results.path,
                           html_out=html.path, markdown_out=summary.path, metrics_out=metrics_json.path)
    runtime.log_report(out, metrics)
