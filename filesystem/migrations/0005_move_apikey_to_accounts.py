"""API keys belong to the accounts app now: this app forgets the model, once `accounts.0001` has
taken it over. State only: the table and its rows stay where they are, now accounts' (see there)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("filesystem", "0004_drop_special_mode_bits"),
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="ApiKey")],
        ),
    ]
