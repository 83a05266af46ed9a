# frozen_string_literal: true

require 'fileutils'
require 'securerandom'
require 'socket'

# The files of a one-node Slurm cluster under its own directory: a munge
# key, an empty plugin stack, and a slurm.conf on free ports, so that
# nothing reads or changes the system's Slurm or munge configuration.
module SlurmConfig
  class << self
    # Writes the cluster's files into `dir`, for node `node`.
    #
    # @param dir [String] the cluster's directory
    # @param node [String] the node's name (the short host name)
    # @return [void]
    def write(dir, node)
      %w[state spool log munge].each { |name| FileUtils.mkdir_p(File.join(dir, name)) }
      key = File.join(dir, 'munge', 'munge.key')
      File.write(key, SecureRandom.random_bytes(128))
      File.chmod(0o400, key) # munged refuses a key others can read
      File.write(File.join(dir, 'plugstack.conf'), '')
      File.write(File.join(dir, 'slurm.conf'), slurm_conf(dir, node))
    end

    private

    # A minimal slurm.conf: root runs everything, processes are tracked
    # without cgroups, nothing is accounted, jobs are scheduled as soon as
    # they are submitted, and the node claims 8 CPUs so that array tasks
    # run side by side on a small machine.
    def slurm_conf(dir, node)
      ctld_port, slurmd_port = free_ports(2)
      <<~CONF
        ClusterName=divvy
        SlurmctldHost=#{node}(127.0.0.1)
        SlurmctldPort=#{ctld_port}
        SlurmdPort=#{slurmd_port}
        SlurmUser=root
        SlurmdUser=root
        AuthType=auth/munge
        CredType=cred/munge
        AuthInfo=socket=#{dir}/munge/socket
        ProctrackType=proctrack/linuxproc
        TaskPlugin=task/none
        JobAcctGatherType=jobacct_gather/none
        AccountingStorageType=accounting_storage/none
        PlugStackConfig=#{dir}/plugstack.conf
        SelectType=select/cons_tres
        SelectTypeParameters=CR_CPU
        MpiDefault=none
        ReturnToService=2
        KillWait=5
        MailProg=/bin/true
        SchedulerParameters=batch_sched_delay=0
        StateSaveLocation=#{dir}/state
        SlurmdSpoolDir=#{dir}/spool
        SlurmctldPidFile=#{dir}/slurmctld.pid
        SlurmdPidFile=#{dir}/slurmd.pid
        SlurmctldLogFile=#{dir}/log/slurmctld.log
        SlurmdLogFile=#{dir}/log/slurmd.log
        SlurmdParameters=config_overrides
        NodeName=#{node} NodeAddr=127.0.0.1 CPUs=8 State=UNKNOWN
        PartitionName=divvy Nodes=#{node} Default=YES MaxTime=INFINITE State=UP
      CONF
    end

    # `count` TCP ports free on this machine just now.
    def free_ports(count)
      servers = Array.new(count) { TCPServer.new('127.0.0.1', 0) }
      servers.map { |server| server.addr[1] }
    ensure
      servers&.each(&:close)
    end
  end
end
