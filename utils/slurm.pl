#!/usr/bin/env perl
# utils/slurm.pl: the Slurm backend of cmd.sh, with run.pl's calling convention
#
#   slurm.pl [options] [JOB=a:b] <log> <command>...
#
# Submitting to Slurm (job arrays, --mem/--gpu/--num-threads as sbatch resources) is not written yet.
# Until it is, this script only tells the user clearly why it cannot run and what to use instead,
# rather than failing later inside a recipe stage.
use strict;
use warnings;
use File::Spec;

sub on_path {
    my ($tool) = @_;
    return grep { -x File::Spec->catfile($_, $tool) } File::Spec->path();
}

for my $tool (qw(sbatch squeue)) {
    next if on_path($tool);
    print STDERR "slurm.pl: $tool not found; Slurm is not installed here; use cmd_backend=local in cmd.sh\n";
    exit 1;
}
print STDERR "slurm.pl: submitting jobs to Slurm is not implemented yet; use cmd_backend=local in cmd.sh\n";
exit 1;
