"""Distills a teacher into a student on CIFAR-10/100.

    python apps/distill.py --flagfile=cifar100.flags

Loads the teacher from --teacher_path (trains it first with the teacher flags if it is missing and
--train_teacher_if_missing is on), builds the student from the zoo, and trains it with the chosen
method and temperature scheme. The defaults are the paper's: KD on standardized logits with the
adaptive max-logit temperature, weights CE 0.1 and KD 9. Writes saved_models/<dataset>/<run name>/
(config.json, metrics.csv, tensorboard/, student_best.keras, student_final.keras, results.json);
rerunning the same command resumes an interrupted run.
"""

import os

from absl import app, flags

import app_flags
import common

FLAGS = flags.FLAGS
app_flags.define_data_flags()
app_flags.define_training_flags()

# ---------------------------------------------------------------------------- models
flags.DEFINE_string("teacher", "resnet32x4", "Teacher architecture (zoo name), used to train a missing teacher.")
flags.DEFINE_string("teacher_path", None, "Teacher .keras file (default: <output_dir>/<dataset>/<teacher>/teacher.keras).")
flags.DEFINE_bool("train_teacher_if_missing", True, "Train the teacher first when --teacher_path does not exist.")
flags.DEFINE_integer("teacher_epochs", None, "Epochs for a teacher trained here (default: --epochs).", lower_bound=1)
flags.DEFINE_list("teacher_lr_milestones", None, "Learning-rate milestones for a teacher trained here (default: --lr_milestones).")
flags.DEFINE_float("teacher_learning_rate", None, "Learning rate for a teacher trained here (default: --learning_rate).", lower_bound=0.0)
flags.DEFINE_string(
    "teacher_cache", None, "Directory of an exact teacher-logit cache (tfadakd.teacher_cache): built for the "
    "--epochs of this run if missing or incomplete, reused (after checking its manifest and checksums) otherwise; the "
    "steps then skip the teacher's forward pass. Runs sharing it must share the teacher, data slice and --data_seed.")
flags.DEFINE_bool("unsafe_teacher", False, "Allow a teacher .keras file containing arbitrary code (Lambda layers). Only for files you trust.")
flags.DEFINE_string("student", "resnet8x4", "Student architecture (zoo name).")
flags.DEFINE_bool("baseline_student", False, "Also train the student alone (cross-entropy, same budget) and report it.")
flags.DEFINE_list("export_tflite", [], "After training, export the best student to TFLite in these modes (none, float16, dynamic, int8) into <run dir>/export/, with export.json.")
flags.DEFINE_bool("dry_run", False, "Print the plan (phases, epochs, steps, estimated wall time from a few timed "
                  "steps of throwaway models) and exit: trains nothing and writes nothing.")
flags.DEFINE_bool("student_alone", False, "Only train the student alone (cross-entropy) into the run directory: the no-distillation baseline.")

# ---------------------------------------------------------------------------- method
flags.DEFINE_list("plugins", [], "Python modules to import first, e.g. ones that register a new temperature scheme "
                  "(tfadakd.temperatures.TEMPERATURES) or method (tfadakd.losses.LOSSES); found on PYTHONPATH.")
flags.DEFINE_string("method", "kd", "Distillation loss: kd or dkd (tfadakd.losses.LOSSES).")
flags.DEFINE_list("method_options", [], "Keyword arguments of the method's builder as name=value pairs (values "
                  "read as Python literals), e.g. --method_options=beta=8; override the dkd_* flags.")
flags.DEFINE_string("temperature", "adaptive", "Temperature scheme: static, adaptive, standardized, learnable, normkd, "
                    "or one registered by a --plugins module.")
flags.DEFINE_list("temperature_options", [], "Keyword arguments of the scheme's builder as name=value pairs (values "
                  "read as Python literals), e.g. --temperature=static --temperature_options=temperature=3; they "
                  "override the scheme flags below (--static_temperature, ...), which serve the built-in schemes.")
flags.DEFINE_enum("temperature_source", "both", ["both", "teacher"], "Adaptive temperature: max over both logit vectors (reference code) or the teacher's (paper's abstract).")
flags.DEFINE_float("static_temperature", 4.0, "T for --temperature=static.")
flags.DEFINE_float("standardized_base", 2.0, "Base T for --temperature=standardized.")
flags.DEFINE_float("normkd_scale", 2.0, "Scale of the std for --temperature=normkd.")
flags.DEFINE_enum("learnable_mode", "global", ["global", "instance"], "CTKD temperature: one global value or a per-sample MLP.")
flags.DEFINE_integer("learnable_reversal_epochs", 10, "CTKD: epochs of the gradient-reversal cosine schedule.", lower_bound=1)
flags.DEFINE_bool("standardize", True, "Z-score teacher and student logits per sample before the loss (logit standardization).")
flags.DEFINE_float("student_loss_weight", 0.1, "Weight of the cross-entropy on labels.", lower_bound=0.0)
flags.DEFINE_float("distillation_loss_weight", 9.0, "Weight of the distillation loss.", lower_bound=0.0)
flags.DEFINE_float("dkd_alpha", 1.0, "DKD: TCKD weight.", lower_bound=0.0)
flags.DEFINE_float("dkd_beta", 8.0, "DKD: NCKD weight (per-pair values in apps/flags/).", lower_bound=0.0)
flags.DEFINE_integer("dkd_warmup_epochs", 20, "DKD: epochs of linear warm-up.", lower_bound=0)
flags.DEFINE_list("terms", [], "Several distillation terms at once, as name:weight pairs, e.g. --terms=kd:9,fitnet:100 "
                  "(names: the logit methods of --method, whose temperature and standardization come from their "
                  "flags, and the feature terms fitnet, at, rkd); replaces --method and --distillation_loss_weight.")
flags.DEFINE_multi_string("term_option", [], "A feature term's option as term.name=value (a Python literal), e.g. "
                          "--term_option=fitnet.stage=stage3 --term_option=\"at.stages=('stage2', 'stage3')\"; "
                          "repeat the flag for several.")
flags.DEFINE_enum("nan_policy", "raise", ["raise", "skip_batch"], "A batch with NaN/Inf teacher logits, loss or gradients is never applied; raise: stop the run with a message; skip_batch: go on and count it in the skipped_batches log.")


#: The scheme flags of the built-in schemes, as their builders' keyword arguments.
SCHEME_FLAGS = {
    "static": {"temperature": "static_temperature"},
    "adaptive": {"source": "temperature_source"},
    "standardized": {"base": "standardized_base"},
    "normkd": {"scale": "normkd_scale"},
    "learnable": {"mode": "learnable_mode", "reversal_epochs": "learnable_reversal_epochs"},
}
METHOD_FLAGS = {"dkd": {"alpha": "dkd_alpha", "beta": "dkd_beta", "warmup_epochs": "dkd_warmup_epochs"}}


def parse_options(flag, pairs):
    """`name=value` pairs as keyword arguments (values as Python literals, else strings); exits on a bad pair."""
    import ast

    options = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip().isidentifier():
            common.fail(f"--{flag} takes name=value pairs, got {pair!r} (e.g. --{flag}=temperature=3).")
        try:
            options[name.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            options[name.strip()] = value.strip()
    return options


def builder_options(config, name, flag_map, flag):
    """The builder's keyword arguments: the named flags of a built-in entry, overridden by --<flag>."""
    named = {arg: getattr(config, flag_name) for arg, flag_name in flag_map.get(name, {}).items()}
    return {**named, **parse_options(flag, getattr(config, flag))}


def make_loss(config):
    """The distillation loss of the flags; raises ValueError or TypeError for bad options."""
    import tfadakd

    temperature = tfadakd.temperatures.TEMPERATURES.build(
        config.temperature, **builder_options(config, config.temperature, SCHEME_FLAGS, "temperature_options"))
    return tfadakd.losses.LOSSES.build(
        config.method, temperature=temperature, standardize=config.standardize,
        **builder_options(config, config.method, METHOD_FLAGS, "method_options"))


def term_specs(config):
    """[(name, weight)]: --terms, else --method with --distillation_loss_weight; exits on a malformed pair."""
    if not ("terms" in config and config.terms):
        return [(config.method, config.distillation_loss_weight)]
    specs = []
    for item in config.terms:
        name, sep, weight = item.partition(":")
        try:
            value = float(weight)
        except ValueError:
            value = None
        if not sep or not name or value is None or not value >= 0 or value == float("inf"):
            common.fail(f"--terms takes name:weight pairs with a finite weight >= 0, got {item!r} (e.g. "
                        "--terms=kd:9,fitnet:100).")
        specs.append((name, value))
    return specs


def term_names(config):
    """The names of the run's terms (--terms, else --method), without checking their weights."""
    if "terms" in config and config.terms:
        return [item.partition(":")[0] for item in config.terms]
    return [config.method]


def term_options(config):
    """{term name: {option: value}} from --term_option; exits on a malformed one."""
    import ast

    options = {}
    for item in (config.term_option if "term_option" in config else ()):
        key, sep, value = item.partition("=")
        term, dot, option = key.partition(".")
        if not sep or not dot or not option.strip().isidentifier():
            common.fail(f"--term_option takes term.name=value, got {item!r} (e.g. --term_option=fitnet.stage=stage3).")
        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            parsed = value.strip()
        options.setdefault(term.strip(), {})[option.strip()] = parsed
    return options


def make_terms(config):
    """The Distiller's terms of the flags, [(term, weight)]: logit methods through make_loss (their flags),
    feature terms from tfadakd.methods with --term_option; raises ValueError or TypeError for bad options."""
    import tfadakd

    options, specs = term_options(config), term_specs(config)
    unknown = sorted(set(options) - {name for name, _ in specs})
    if unknown:
        raise ValueError(f"--term_option names {unknown}, which are not among the run's terms "
                         f"{[name for name, _ in specs]}")
    terms = []
    for name, weight in specs:
        if name in tfadakd.methods.METHODS:
            terms.append((tfadakd.methods.METHODS.build(name, **options.get(name, {})), weight))
        elif name in tfadakd.losses.LOSSES:
            if options.get(name):
                raise ValueError(f"the logit method {name!r} takes its options from its flags and --method_options, "
                                 "not --term_option")
            terms.append((tfadakd.methods.LogitTerm(make_loss(config.replace(method=name)), name=name), weight))
        else:
            valid = sorted(tfadakd.methods.METHODS.names() + tfadakd.losses.LOSSES.names())
            raise ValueError(f"Unknown distillation term {name!r}. Valid names: {', '.join(valid)}")
    return terms


def make_distiller(config, student, teacher):
    """The run's `tfadakd.Distiller`: with `terms=` for --terms or a feature --method, else with the one logit
    loss (the form, and the logs, of every run before terms)."""
    import tfadakd

    if ("terms" in config and config.terms) or config.method in tfadakd.methods.METHODS:
        return tfadakd.Distiller(student, teacher, terms=make_terms(config),
                                 student_loss_weight=config.student_loss_weight, nan_policy=config.nan_policy)
    return tfadakd.Distiller(student, teacher, make_loss(config), config.student_loss_weight,
                             config.distillation_loss_weight, nan_policy=config.nan_policy)


def reads_teacher_features(config):
    """Whether a term of the flags reads the teacher's intermediate features (then no teacher-logit cache)."""
    import tfadakd

    return any(name in tfadakd.methods.METHODS for name in term_names(config))


def default_run_name(config):
    standardized = "_std" if config.standardize else ""
    method = "+".join(term_names(config))
    return f"{config.student}_from_{config.teacher}_{method}_{config.temperature}{standardized}_s{config.seed}"


def verify_shipped(path):
    """Checks `path` against its `<path>.sha256` (written beside every shipped file), if there is one;
    exits with a clear message when the file does not match."""
    recorded_path = f"{path}.sha256"
    if not os.path.exists(recorded_path):
        return
    with open(recorded_path) as f:
        recorded = f.read().split()[0].lower()
    from tfadakd.files import file_sha256

    actual = file_sha256(path)
    if actual != recorded:
        common.fail(
            f"{path} does not match its SHA-256 in {recorded_path} (it is {actual}, {recorded} was "
            "recorded): the file is damaged or was replaced. Restore it (git checkout -- <file>), or delete both "
            "files to train a new teacher.")


def load_teacher(path, unsafe=False):
    import keras

    verify_shipped(path)
    try:
        teacher = keras.models.load_model(path, safe_mode=not unsafe)
    except Exception as error:  # noqa: BLE001 - any failure to read the file is reported the same way
        common.fail(
            f"Cannot load the teacher from {path}: {common.load_error(path, error)}\nThe file may be truncated, "
            "not a .keras model, or (with a Lambda layer) refused by Keras' safe mode; retrain it with "
            "apps/train_teacher.py, delete it to have it retrained here, or pass --unsafe_teacher for a file you trust."
        )
    from tfadakd.models import fuse_batch_norm

    fuse_batch_norm(teacher)  # the file names the zoo's fused batch norms as Keras' own (portable files)
    return teacher


def import_plugins(modules):
    """Imports the --plugins modules; exits with the import error if one fails."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 - any failure of a user module is reported the same way
            common.fail(f"--plugins: cannot import {module!r}: {type(error).__name__}: {error}. The module must be "
                        "importable from PYTHONPATH (or the current directory).")


def top1(model, dataset):
    """Top-1 accuracy (%) of a logits model on a dataset, computed directly (the model called on each batch:
    under MultiWorkerMirroredStrategy, predict_on_batch would return every worker's rows)."""
    import numpy as np

    correct = total = 0
    for x, y in dataset:
        predictions = np.argmax(np.asarray(model(x, training=False)), axis=-1)
        correct += int(np.sum(predictions == np.asarray(y)))
        total += len(predictions)
    return 100.0 * correct / max(total, 1)


def _last_test_top1(results):
    return results.get("test_top1_last", results.get("last_top1"))


def check(config):
    """Every check that needs no data, before anything trains; exits with a message on the first failure."""
    import tfadakd

    if config.teacher_cache and os.path.exists(config.teacher_cache) and not os.path.isdir(config.teacher_cache):
        common.fail(f"--teacher_cache={config.teacher_cache} is a file: the cache is a folder (one file per epoch and "
                    "a manifest). Pass a folder path that does not exist yet (it is created) or an existing cache.")
    common.run_dir(config, default_run_name(config))  # refuses a --run_name outside --output_dir

    import_plugins(config.plugins)
    if config.method not in tfadakd.losses.LOSSES and config.method not in tfadakd.methods.METHODS:
        valid = sorted(tfadakd.losses.LOSSES.names() + tfadakd.methods.METHODS.names())
        common.fail(f"Unknown --method {config.method!r}. Valid names: {', '.join(valid)}.")
    if config.temperature not in tfadakd.temperatures.TEMPERATURES:
        common.fail(f"Unknown --temperature {config.temperature!r}. Valid names: "
                    f"{', '.join(tfadakd.temperatures.TEMPERATURES.names())}.")
    for flag in ("student", "teacher"):
        common.check_model_name(flag, getattr(config, flag))
    try:
        make_terms(config)  # validate the methods' options before any training
    except (ValueError, TypeError) as error:
        common.fail(f"{error} (--method={config.method}, --temperature={config.temperature}; the scheme and method "
                    "options come from their flags and --temperature_options / --method_options)")
    if config.student_loss_weight == 0 and all(weight == 0 for _, weight in term_specs(config)):
        common.fail("--student_loss_weight and --distillation_loss_weight cannot both be 0." if not config.terms else
                    "--student_loss_weight and every weight of --terms are 0: nothing to train on.")
    common.milestones(config)
    unknown = sorted(set(config.export_tflite) - set(tfadakd.export.QUANTIZATION_MODES))
    if unknown:
        common.fail(f"Unknown --export_tflite mode(s) {unknown}. Valid: {', '.join(tfadakd.export.QUANTIZATION_MODES)}.")
    teacher_epochs = config.teacher_epochs or config.epochs
    if config.teacher_lr_milestones:
        common.milestones(config, "teacher_lr_milestones", teacher_epochs)


def teacher_path_of(config):
    return config.teacher_path or os.path.join(config.output_dir, common.dataset_dir(config), config.teacher,
                                               "teacher.keras")


def teacher_file(config, strategy, data, callbacks=()):
    """The teacher's path, training the teacher there first if it is missing (and allowed)."""
    teacher_path = teacher_path_of(config)
    if os.path.exists(teacher_path):
        return teacher_path
    if not config.train_teacher_if_missing:
        common.fail(
            f"The teacher {teacher_path} does not exist. Train it with `python apps/train_teacher.py "
            f"--model={config.teacher} --dataset={config.dataset}`, pass --teacher_path, or allow "
            "--train_teacher_if_missing."
        )
    epochs = config.teacher_epochs or config.epochs
    print(f"Teacher {teacher_path} not found: training {config.teacher} for {epochs} epochs first.")
    learning_rate = config.teacher_learning_rate or config.learning_rate
    milestones = common.milestones(config, "teacher_lr_milestones", epochs) if config.teacher_lr_milestones else None
    common.train_model(
        config, strategy, data, config.teacher, os.path.dirname(teacher_path), epochs, learning_rate,
        common.training_config(config, config.teacher, epochs=epochs, learning_rate=learning_rate,
                               lr_milestones=milestones or list(config.lr_milestones)),
        save_path=teacher_path, lr_milestones=milestones, callbacks=callbacks,
    )
    return teacher_path


def check_teacher_data(teacher_path, train):
    """Exits when the teacher was trained by the apps on the same data set, path and split as this run's
    training data, but on other files (its config.json records them): a folder changed since, and the
    teacher no longer matches it. A teacher trained on other data or another split (given on purpose with
    --teacher_path) is not compared."""
    from tfadakd.data.identity import describe_data_change
    from tfadakd.files import read_json
    from tfadakd.runs import comparable

    recorded = read_json(os.path.join(os.path.dirname(os.path.abspath(teacher_path)), "config.json"), {})
    old = recorded.get("training_data") if isinstance(recorded, dict) else None
    new = train.description
    if not isinstance(old, dict) or any(old.get(k) != new.get(k) for k in ("dataset", "path", "split")):
        return
    if comparable(old) != comparable(new):
        common.fail(f"The teacher {teacher_path} was trained on {new.get('dataset')} {new.get('split')} as it was "
                    f"then; the data has changed since ({describe_data_change(old, new)}). Retrain the teacher "
                    "(delete its folder to have it retrained here) or restore the data.")


def cached_teacher_logits(config, teacher, train):
    """`train` carrying the teacher's logits from --teacher_cache, built first where epochs are missing."""
    from tfadakd import teacher_cache

    cache = teacher_cache.TeacherCache(config.teacher_cache)
    try:
        done = cache.epochs_done() if cache.manifest() is not None else []
        missing = [e + 1 for e in range(config.epochs) if e not in done]
        if missing:
            which = (f"{missing[0]}-{missing[-1]}" if missing == list(range(missing[0], missing[-1] + 1))
                     else ", ".join(map(str, missing)))
            print(f"Teacher-logit cache {config.teacher_cache}: computing epochs {which} "
                  f"({train.num_examples} examples each, once for every run that shares it).", flush=True)
            with common.stop_message("the teacher-logit cache build", "Rerun the same command: the build goes on "
                                     "from the last complete epoch file."):
                cache.build(teacher, train, config.epochs, verbose=1 if config.verbose else 0)
        else:
            print(f"Teacher-logit cache {config.teacher_cache}: reusing {config.epochs} epochs (the teacher's "
                  "forward pass is skipped).", flush=True)
        cache.verify(teacher, train, config.epochs)
    except (teacher_cache.CacheMismatchError, ValueError) as error:  # ValueError: NaN logits of the teacher
        common.fail(str(error))
    except OSError as error:
        common.fail(f"{error}\nFree some disk space (or fix the folder), then rerun: the cache build resumes.")
    return cache.attach(train)


def train_alone(config, strategy, data, run_dir, callbacks=()):
    """The student trained alone (cross-entropy) with the same budget; returns its results."""
    results, _ = common.train_model(config, strategy, data, config.student, run_dir, config.epochs,
                                    config.learning_rate, common.training_config(config, config.student),
                                    callbacks=callbacks)
    return results


def distill(config, strategy, data, teacher_path, run_dir, callbacks=()):
    """Distills the teacher into a new student in `run_dir`; returns (results, teacher)."""
    import keras

    import tfadakd

    with strategy.scope():
        teacher = load_teacher(teacher_path, config.unsafe_teacher)
        student = common.build_model(config, config.student, data.num_classes, data.image_shape)
        try:
            distiller = make_distiller(config, student, teacher)
        except ValueError as error:
            common.fail(f"{error} (teacher: {teacher_path})")
        distiller.compile(
            optimizer=common.optimizer(config, strategy, data.steps_per_epoch),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=common.metrics(),
            jit_compile=config.jit_compile,
        )
    if config.teacher_cache and not distiller.reads_teacher_features:
        data = data.with_train(cached_teacher_logits(config, teacher, data.train))
    results = common.fit_run(
        distiller, data.train, data.validation, run_dir, config.epochs, model_to_save=student,
        # The teacher file's digest: a resume with a changed teacher file is refused (fit_run compares configs).
        config={"teacher_path": teacher_path, "teacher_sha256": tfadakd.files.file_sha256(teacher_path),
                **config.as_dict(), "data": data.description, "training_data": data.train.description},
        verbose=config.verbose,
        test_data=data.reported_test, callbacks=list(callbacks),
    )
    return results, teacher


def alone_dir_of(config):
    """The student-alone run's directory: --run_name itself with --student_alone (that run is the only one);
    with --baseline_student beside a distillation, `<run_name>_alone`, never the distilled run's directory."""
    default = f"{config.student}_alone_s{config.seed}"
    if config.run_name and not config.student_alone:
        return os.path.join(config.output_dir, common.dataset_dir(config), f"{config.run_name}_alone")
    return common.run_dir(config, default)


def make_plan(config, data):
    """The run's phases (what is left of them on a resume), with their costs in forward passes."""
    import keras

    import plan as plan_lib
    import tfadakd

    shape = dict(num_classes=data.num_classes, input_shape=data.image_shape)
    student = tfadakd.models.flops(tfadakd.models.build(config.student, **shape))
    path = teacher_path_of(config)
    teacher_model = (load_teacher(path, config.unsafe_teacher) if os.path.exists(path)
                     else tfadakd.models.build(config.teacher, **shape))
    teacher = tfadakd.models.flops(teacher_model)
    steps, batch = data.steps_per_epoch, config.batch_size
    eval_steps = int(data.validation.cardinality()) + (int(data.test.cardinality()) if data.reported_test else 0)

    def phase(name, epochs, train_units, eval_units, train_steps=steps, evals=eval_steps):
        return plan_lib.Phase(name, epochs, train_steps, evals, batch, train_units, eval_units)

    alone = phase("student alone", config.epochs - common.epochs_done(alone_dir_of(config)), 3 * student, student)
    phases = []
    if config.student_alone:
        phases.append(alone)
    else:
        if not os.path.exists(path):
            teacher_epochs = config.teacher_epochs or config.epochs
            phases.append(phase("teacher", teacher_epochs - common.epochs_done(os.path.dirname(path)), 3 * teacher, teacher))
        cached = 0
        if config.teacher_cache and reads_teacher_features(config):
            print(f"Teacher-logit cache {config.teacher_cache}: not used, the terms read the teacher's intermediate "
                  "features (a cache holds its logits only); the teacher runs in every step.")
        elif config.teacher_cache:
            from tfadakd.teacher_cache import CacheMismatchError, TeacherCache

            try:
                cached = len(TeacherCache(config.teacher_cache).epochs_done()) if os.path.isdir(config.teacher_cache) else 0
            except CacheMismatchError as error:
                common.fail(str(error))
            phases.append(phase("teacher cache", max(0, config.epochs - cached), teacher, 0, evals=0))
        distill_units = 3 * student + (0 if config.teacher_cache and not reads_teacher_features(config) else teacher)
        run_dir = common.run_dir(config, default_run_name(config))
        phases.append(phase("distillation", config.epochs - common.epochs_done(run_dir), distill_units, student))
        if config.baseline_student:
            phases.append(alone)
        if config.export_tflite:  # the TFLite interpreter runs one image at a time: ~10x a batched forward (rough)
            phases.append(phase("export", len(config.export_tflite), 0, 10 * student, train_steps=0,
                                evals=int(data.test.cardinality())))
    device, accelerator = common.device_description()
    return plan_lib.Plan(phases, device, keras.mixed_precision.global_policy().name, accelerator)


def measure(config, plan, data):
    """Seconds per unit from a few steps of throwaway models of the plan's first training phase (--dry_run)."""
    import keras
    import numpy as np

    import plan as plan_lib
    import tfadakd

    first = next((p for p in plan.phases if p.train_steps and p.train_units), None)
    if first is None:
        return None
    num_classes, shape = data.num_classes, dict(num_classes=data.num_classes, input_shape=data.image_shape)
    path = teacher_path_of(config)
    student = tfadakd.models.build(config.student, **shape)
    if first.name == "distillation":
        teacher = (load_teacher(path, config.unsafe_teacher) if os.path.exists(path)
                   else tfadakd.models.build(config.teacher, **shape))
        model = make_distiller(config, student, teacher)
    elif first.name == "teacher":
        model = tfadakd.models.build(config.teacher, **shape)
    elif first.name == "teacher cache":
        teacher = load_teacher(path, config.unsafe_teacher)
        step = lambda: teacher.predict_on_batch(x)  # noqa: E731
    else:
        model = student
    rng = np.random.default_rng(0)
    x = rng.normal(size=(config.batch_size, *data.image_shape)).astype("float32")
    y = rng.integers(0, num_classes, config.batch_size)
    if first.name != "teacher cache":
        model.compile(optimizer=common.optimizer(config, tfadakd.distribute.get_strategy("default"), 10),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        step = lambda: model.train_on_batch(x, y)  # noqa: E731
    return plan_lib.seconds_per_unit(step, first.train_units * first.batch_size)


def main(argv):
    if len(argv) > 1:
        common.fail(f"Unexpected arguments {argv[1:]}; flags look like --name=value.")
    import plan as plan_lib

    config = common.Config.from_flags()
    check(config)
    if not config.dry_run:
        common.writable(config.output_dir)
    strategy = common.setup(config)
    data = common.datasets(config, strategy)
    plan = make_plan(config, data)
    if config.dry_run:
        for line in plan.describe(measure(config, plan, data)):
            print(line)
        return
    for line in plan.describe():
        print(line)
    progress = plan_lib.Progress(plan)

    def track(name, epochs):
        phase_names = [p.name for p in plan.phases]
        return [plan_lib.callback(progress, name, epochs)] if name in phase_names else []

    if config.student_alone:
        run_dir = alone_dir_of(config)
        results = train_alone(config, strategy, data, run_dir, track("student alone", config.epochs))
        common.print_table([{"model": f"student {config.student} alone", **common.top1_columns(results),
                             "run": run_dir}], "Finished")
        return
    teacher_path = teacher_file(config, strategy, data, track("teacher", config.teacher_epochs or config.epochs))
    check_teacher_data(teacher_path, data.train)
    run_dir = common.run_dir(config, default_run_name(config))
    results, teacher = distill(config, strategy, data, teacher_path, run_dir, track("distillation", config.epochs))

    rows = [{"model": f"teacher {config.teacher}", "top-1 (%)": top1(teacher, data.test), "run": teacher_path}]
    if config.baseline_student:
        alone_dir = alone_dir_of(config)
        alone = train_alone(config, strategy, data, alone_dir, track("student alone", config.epochs))
        rows.append({"model": f"student {config.student} alone", "top-1 (%)": _last_test_top1(alone), "run": alone_dir})
    rows.append({"model": f"student {config.student} distilled", "top-1 (%)": _last_test_top1(results), "run": run_dir})
    common.print_table(rows, f"{config.dataset}, {results.get('epochs')} epochs, {config.method} + "
                             f"{config.temperature} temperature (last-epoch test top-1)")
    if config.export_tflite:
        import exporting

        exporting.print_report(exporting.export_run(  # on the data config.json records (any data set)
            run_dir, config.export_tflite, config.dataset, test_examples=config.test_examples or None,
            data_dir=config.data_dir, manual_dir=config.manual_dir))
    epoch = f"epoch {results.get('best_epoch', -1) + 1} of {results.get('epochs')}"  # best_epoch counts from 0
    if "test_top1_selected" in results:
        chosen = f"test top-1 {results['test_top1_selected']:.2f}% at {epoch} (chosen on validation)"
    else:
        chosen = f"best test top-1 {results.get('best_top1', float('nan')):.2f}% at {epoch} (chosen on test)"
    print(f"\ndistilled student: {chosen}; results: {os.path.join(run_dir, 'results.json')}")


if __name__ == "__main__":
    app.run(main, flags_parser=common.parse_flags)
