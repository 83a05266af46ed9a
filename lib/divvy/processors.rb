# frozen_string_literal: true

require 'etc'

# Divvy.processors: how many CPUs this process may use, the default number
# of workers.
module Divvy
  # Reads the CPU limits a container puts on a process: its cgroups' CPU
  # quota, and the CPUs its affinity mask allows. Runs in the master.
  module Processors
    # Where the cgroup file systems are mounted, under the root.
    CGROUP_MOUNT = 'sys/fs/cgroup'
    # Where a cgroup v1 `cpu` controller may be mounted, under CGROUP_MOUNT.
    V1_CPU_MOUNTS = %w[cpu cpu,cpuacct cpuacct,cpu].freeze

    module_function

    # Returns how many CPUs this process may use (see {Divvy.processors}).
    #
    # @param root [String] the file system root
    # @return [Integer] at least 1
    def count(root)
      available = Etc.nprocessors
      quota = cgroup_quota(root)
      quota ? quota.ceil.clamp(1, available) : available
    end

    # Returns the smallest CPU quota (in CPUs, possibly fractional) of this
    # process's cgroups and their ancestors, v2 and v1 alike; nil when none
    # is set or none can be read (no cgroups, as on macOS).
    def cgroup_quota(root)
      membership = File.readlines(File.join(root, 'proc/self/cgroup'), chomp: true)
      quotas = membership.flat_map do |line|
        _, controllers, path = line.split(':', 3)
        if controllers.empty?
          v2_dirs(root, path).filter_map { |dir| v2_quota(dir) }
        elsif controllers.split(',').include?('cpu')
          v1_dirs(root, path).filter_map { |dir| v1_quota(dir) }
        else
          []
        end
      end
      quotas.min
    rescue SystemCallError
      nil
    end

    # The cgroup v2 directories that limit `path`: its own and its
    # ancestors'. In a container the mount shows the container's own
    # cgroup at its top, so the top counts even when `path` is not there.
    def v2_dirs(root, path)
      lineage(File.join(root, CGROUP_MOUNT), path)
    end

    # The cgroup v1 `cpu` directories that limit `path`, as for v2.
    def v1_dirs(root, path)
      mount = V1_CPU_MOUNTS.map { |name| File.join(root, CGROUP_MOUNT, name) }.find { |dir| File.directory?(dir) }
      mount ? lineage(mount, path) : []
    end

    # `mount` joined with `path` and with each of its ancestors.
    def lineage(mount, path)
      parts = path.to_s.split('/').reject(&:empty?)
      (0..parts.size).map { |depth| File.join(mount, *parts.first(depth)) }
    end

    # cgroup v2 `cpu.max`: "QUOTA PERIOD" in microseconds, or "max PERIOD"
    # for no limit. Returns CPUs, or nil.
    def v2_quota(dir)
      quota, period = File.read(File.join(dir, 'cpu.max')).split
      quota == 'max' ? nil : fraction(quota, period)
    rescue SystemCallError
      nil
    end

    # cgroup v1 `cpu.cfs_quota_us` (-1 for no limit) over
    # `cpu.cfs_period_us`. Returns CPUs, or nil.
    def v1_quota(dir)
      quota = File.read(File.join(dir, 'cpu.cfs_quota_us'))
      fraction(quota, File.read(File.join(dir, 'cpu.cfs_period_us')))
    rescue SystemCallError
      nil
    end

    # QUOTA / PERIOD when both are positive integers; nil otherwise.
    def fraction(quota, period)
      quota = Integer(quota, exception: false)
      period = Integer(period, exception: false)
      quota.to_f / period if quota&.positive? && period&.positive?
    end
  end

  private_constant :Processors

  # Returns how many CPUs this process may use: the CPUs its affinity mask
  # allows (`Etc.nprocessors`, which reads the mask on Linux, so `taskset`
  # and cpusets count), or fewer when a cgroup CPU quota, a container's CPU
  # limit, allows less: cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us` over
  # `cpu.cfs_period_us`, of the process's cgroup and its ancestors, rounded
  # up (a limit of 1.5 CPUs gives 2). It is the default number of workers
  # of the divvy command and of {Divvy.map} and {Divvy.each}. Runs in any
  # process.
  #
  # @param root [String] the file system root under which
  #   `/proc/self/cgroup` and `/sys/fs/cgroup` are read (a test can point it
  #   at a fake tree)
  # @return [Integer] at least 1
  def self.processors(root: '/')
    Processors.count(root)
  end
end
