# frozen_string_literal: true

require 'open3'

# Finds Slurm's and munge's programs, and installs Debian's packages with
# apt-get when one is missing (as root only; never for a user without it).
module SlurmInstaller
  # Why Slurm cannot run here: the packages cannot be installed, or the
  # daemons do not come up. Specs skip with its message.
  class Unavailable < StandardError; end

  # The Debian packages a one-node cluster needs.
  PACKAGES = %w[slurmctld slurmd slurm-client munge].freeze
  # The programs the specs run.
  PROGRAMS = %w[munged slurmctld slurmd sbatch squeue sinfo scontrol scancel].freeze
  # Where Debian puts the daemons, which may not be on a user's PATH.
  SBIN = %w[/usr/sbin /sbin].freeze

  class << self
    # Installs the packages when a program is missing.
    #
    # @return [Float] the seconds it took (0 when nothing was missing)
    # @raise [Unavailable] when they are missing and cannot be installed
    def ensure_installed
      return 0.0 if PROGRAMS.all? { |name| find(name) }

      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      install
      Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
    end

    # @return [String, nil] the path of program `name` on PATH or in
    #   /usr/sbin, nil when there is none
    def find(name)
      dirs = ENV.fetch('PATH', '').split(File::PATH_SEPARATOR) + SBIN
      dirs.map { |dir| File.join(dir, name) }.find { |file| File.file?(file) && File.executable?(file) }
    end

    # Like find, but raises when the program is missing.
    def find!(name)
      find(name) or raise Unavailable, "#{name} is not installed"
    end

    private

    def install
      raise Unavailable, "Slurm is not installed, and installing #{PACKAGES.join(' ')} needs root" if Process.uid != 0
      raise Unavailable, 'Slurm is not installed, and there is no apt-get to install it' unless find('apt-get')
      return if apt_get_install

      apt_get('update', '-qq') # the package lists may be old or missing
      raise Unavailable, "apt-get could not install #{PACKAGES.join(' ')}" unless apt_get_install
    end

    def apt_get_install
      apt_get('install', '-y', '-qq', '--no-install-recommends', *PACKAGES)
    end

    def apt_get(*args)
      _output, status = Open3.capture2e({ 'DEBIAN_FRONTEND' => 'noninteractive' }, 'apt-get', *args)
      status.success?
    end
  end
end
