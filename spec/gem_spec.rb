# frozen_string_literal: true

require 'fileutils'
require 'find'
require 'rubygems/package'
require 'divvy/version'

# The source gem as users get it: `gem build` packages what compiling needs
# and nothing else; `gem install` into an empty GEM_HOME compiles the
# extension with cargo in a temporary target directory and leaves only what
# runs; `gem uninstall` removes it all. Without cargo, or without libclang,
# the install fails with one line saying what to install.
RSpec.describe 'the divvy gem' do
  # Seconds `gem install` may take. Building the extension from the
  # unpacked gem recompiles the divvy crates (their path differs from the
  # checkout's); their dependencies come from a cache under target/, unless
  # that is empty.
  def install_timeout = 900

  # The most an installed gem directory may weigh: the library is about
  # 1 MB, cargo's target directory some 175 MB.
  def max_installed_bytes = 5 * 1024 * 1024

  # What the gem may contain (patterns as in File.fnmatch).
  def packaged_patterns
    %w[Cargo.toml Cargo.lock ext/**/*.{rs,toml,rb} lib/**/*.rb exe/* sig/**/*.rbs
       README.md LICENSE CHANGELOG.md docs/*.md]
  end

  # cargo's cache of compiled dependencies for the gem builds of this Ruby:
  # its build directory only (CARGO_BUILD_BUILD_DIR), so that the final
  # library still lands in the temporary target directory the build makes
  # and removes, as for a user.
  def build_cache(name = 'gem')
    File.join(ROOT, 'target', "ruby-#{RUBY_VERSION[/\A\d+\.\d+/]}-#{name}")
  end

  before(:all) do
    @tmp = Dir.mktmpdir('divvy-gem-spec')
    @gem_file = File.join(@tmp, "divvy-#{Divvy::VERSION}.gem")
    @gem_home = File.join(@tmp, 'gem_home')
    @build_tmp = File.join(@tmp, 'tmpdir')
    FileUtils.mkdir_p([@gem_home, @build_tmp])
    @build = run_long_command(['gem', 'build', 'divvy.gemspec', '-o', @gem_file], timeout: 120)
  end

  after(:all) do
    FileUtils.rm_rf(@tmp)
  end

  # Runs `command` with only the temporary GEM_HOME for gems, without the
  # checkout's lib/ on the load path and without CARGO_TARGET_DIR, from the
  # temporary directory.
  def in_gem_home(*command, timeout: 60, env: {})
    env = { 'RUBYLIB' => nil, 'RUBYOPT' => nil, 'BUNDLE_GEMFILE' => nil, 'CARGO_TARGET_DIR' => nil,
            'GEM_HOME' => @gem_home, 'GEM_PATH' => @gem_home, 'TMPDIR' => @build_tmp }.merge(env)
    run_long_command(command, timeout: timeout, env: env, chdir: @tmp)
  end

  # `gem install` of the source gem into the temporary GEM_HOME.
  def install_gem(env: {})
    in_gem_home('gem', 'install', '--local', '--no-document', '--install-dir', @gem_home, @gem_file,
                timeout: install_timeout, env: env)
  end

  # PATH without the directories that hold cargo.
  def path_without_cargo
    ENV.fetch('PATH').split(':').reject { |dir| File.executable?(File.join(dir, 'cargo')) }.join(':')
  end

  def expect_success(result)
    expect(result.status).to be_success, "exit #{result.status.inspect}\n#{result.stdout}\n#{result.stderr}"
  end

  def divvy_files_in_gem_home
    Dir.glob('{bin,gems,specifications,extensions,cache,build_info,doc}/**/*divvy*', base: @gem_home)
  end

  # The bytes of every file under `dir`.
  def bytes_under(dir)
    Find.find(dir).sum { |path| File.file?(path) ? File.size(path) : 0 }
  end

  # Lines of `output` that divvy wrote (its messages start with "divvy: ").
  def divvy_lines(output)
    output.lines(chomp: true).grep(/\Adivvy: /)
  end

  it 'builds from the checkout' do
    expect_success(@build)
    expect(File).to exist(@gem_file)
  end

  it 'packages what compiling needs and nothing else' do
    files = Gem::Package.new(@gem_file).contents
    expect(files).to include('Cargo.toml', 'Cargo.lock', 'ext/divvy/extconf.rb', 'ext/divvy/cargo_build.rb',
                             'ext/divvy/Cargo.toml', 'ext/divvy/src/lib.rs', 'lib/divvy.rb', 'lib/divvy/cli.rb',
                             'exe/divvy', 'README.md', 'LICENSE', 'CHANGELOG.md')
    expect(files.grep(%r{\A(target|spec|bench|tmp|pkg)/})).to be_empty
    expect(files.grep(/\.so\z|Makefile\z/)).to be_empty
    flags = File::FNM_PATHNAME | File::FNM_EXTGLOB
    expect(files.reject { |file| packaged_patterns.any? { |pattern| File.fnmatch?(pattern, file, flags) } }).to be_empty
  end

  it 'says in one line to install cargo when there is none' do
    install = install_gem(env: { 'PATH' => path_without_cargo })
    expect(install.status).not_to be_success
    output = install.stdout + install.stderr
    expect(divvy_lines(output)).to eq(['divvy: cargo was not found: install the Rust toolchain (https://rustup.rs) ' \
                                       'and retry'])
    expect(output).not_to include('panicked')
    expect(divvy_files_in_gem_home.grep(/\A(bin|specifications)/)).to be_empty
  end

  it 'says in one line to install libclang when there is none' do
    # clang-sys looks only in LIBCLANG_PATH when it is set; the extra
    # bindgen argument makes rb-sys generate its bindings again in a build
    # cache where it already did.
    install = install_gem(env: { 'LIBCLANG_PATH' => File.join(@tmp, 'no-libclang'),
                                 'BINDGEN_EXTRA_CLANG_ARGS' => '-DDIVVY_SPEC_NO_LIBCLANG',
                                 'CARGO_BUILD_BUILD_DIR' => build_cache('no-libclang') })
    expect(install.status).not_to be_success
    output = install.stdout + install.stderr
    expect(divvy_lines(output)).to contain_exactly(start_with('divvy: libclang was not found').and(
                                                     include('install libclang-dev (Debian, Ubuntu)')
                                                   ))
    expect(output).not_to include('panicked')
    expect(output.lines.size).to be < 30
    expect(Dir.children(@build_tmp)).to be_empty
  end

  it 'installs into an empty GEM_HOME, leaves only what runs, runs from there, and uninstalls without a trace' do
    install = install_gem(env: { 'CARGO_BUILD_BUILD_DIR' => build_cache })
    expect_success(install)
    expect(File).to be_executable(File.join(@gem_home, 'bin', 'divvy'))
    build_log = File.read(Dir.glob(File.join(@gem_home, 'extensions', '**', 'gem_make.out')).fetch(0))
    manifest = File.join(@gem_home, 'gems', "divvy-#{Divvy::VERSION}", 'ext', 'divvy', 'Cargo.toml')
    expect(build_log).to include("cargo build --release --locked --manifest-path #{manifest}")

    gem_dir = File.join(@gem_home, 'gems', "divvy-#{Divvy::VERSION}")
    expect(Dir.glob('**/{target,CACHEDIR.TAG}', base: gem_dir)).to be_empty
    expect(bytes_under(gem_dir)).to be < max_installed_bytes
    expect(Dir.children(@build_tmp)).to be_empty # the temporary target directory is gone

    example = File.join(ROOT, 'examples', 'danceparty.rb')
    run = in_gem_home(File.join(@gem_home, 'bin', 'divvy'), '-n', '2', example, '3')
    expect_success(run)
    lines = run.stdout.lines(chomp: true)
    expect(lines.first).to eq('Generating 3 ticket codes for the show...')
    tickets = lines.drop(1)
    expect(tickets).to all(match(/\A\s*\d+\s+\d+ \h{40}\z/))
    expect(tickets.map { |line| line.split[1].to_i }.sort).to eq([0, 1, 2])

    loaded = in_gem_home('ruby', '-e', 'require "divvy"; puts $LOADED_FEATURES.grep(/divvy\.so/)')
    expect_success(loaded)
    expect(loaded.stdout.lines(chomp: true)).to contain_exactly(start_with("#{@gem_home}/"))

    uninstall = in_gem_home('gem', 'uninstall', 'divvy', '-x', '--install-dir', @gem_home)
    expect_success(uninstall)
    expect(divvy_files_in_gem_home).to be_empty
  end
end
