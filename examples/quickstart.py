"""The README's example, end to end, on a slice of real CIFAR-10 with small models.

    python examples/quickstart.py                 # about 5 minutes on two CPU cores
    python examples/quickstart.py --epochs=30     # closer to convergence

Trains a resnet20 teacher, a resnet8 student alone, and a resnet8 student distilled with the adaptive
temperature on standardized logits, all on the same budget, and prints their test accuracy.
Not a benchmark: see apps/ and docs/ for real runs.
"""

import argparse

import keras

import tfadakd


def compiled(model, epochs, steps):
    schedule = tfadakd.optimizers.step_decay(0.05, steps, milestones=[max(1, epochs * 3 // 4)])
    model.compile(
        optimizer=tfadakd.optimizers.SGD(schedule, momentum=0.9, weight_decay=5e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train_examples", type=int, default=10000)
    parser.add_argument("--test_examples", type=int, default=2000)
    parser.add_argument("--data_dir", default=None, help="tfds data dir (default: $TFDS_DATA_DIR or tfds' own)")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    train = tfadakd.data.load_cifar("cifar10", "train", num_examples=args.train_examples, seed=0, data_dir=args.data_dir)
    test = tfadakd.data.load_cifar("cifar10", "test", num_examples=args.test_examples, data_dir=args.data_dir)
    steps = -(-args.train_examples // 64)

    teacher = compiled(tfadakd.models.build("resnet20", num_classes=10), args.epochs, steps)
    teacher.fit(train, epochs=args.epochs, verbose=2)

    alone = compiled(tfadakd.models.build("resnet8", num_classes=10), args.epochs, steps)
    alone.fit(train, epochs=args.epochs, verbose=2)

    student = tfadakd.models.build("resnet8", num_classes=10)
    distiller = tfadakd.Distiller(
        student=student,
        teacher=teacher,
        distillation_loss=tfadakd.losses.KD(temperature=tfadakd.temperatures.AdaptiveMaxLogit(), standardize=True),
        student_loss_weight=0.1,
        distillation_loss_weight=9.0,
    )
    compiled(distiller, args.epochs, steps)
    history = distiller.fit(train, validation_data=test, epochs=args.epochs, verbose=2)

    accuracy = {
        "teacher resnet20": teacher.evaluate(test, verbose=0, return_dict=True)["accuracy"],
        "student resnet8 alone": alone.evaluate(test, verbose=0, return_dict=True)["accuracy"],
        "student resnet8 distilled": distiller.evaluate(test, verbose=0, return_dict=True)["accuracy"],
    }
    print(f"\nCIFAR-10, {args.train_examples} training images, {args.epochs} epochs each, "
          f"test on {args.test_examples} images:")
    for name, value in accuracy.items():
        print(f"  {name:<28} {100 * value:6.2f}%")
    print(f"  mean adaptive temperature in the last epoch: {history.history['temperature'][-1]:.2f}")


if __name__ == "__main__":
    main()
